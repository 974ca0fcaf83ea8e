"""FhirClient against a real FHIR server (sekmet) holding three Synthea patients: it
fetches a patient's record as the binding needs it, page by page, and fails in one line
(never a hang) when the server is missing, silent, refusing or misbehaving."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from medserve.errors import (
    ConfigError,
    FhirError,
    ResourceNotFound,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from medserve.interop.fhir.binding import Binding
from medserve.interop.fhir.client import FhirClient
from support.fhir_server import FhirServer, running_fhir_server
from support.servers import free_port
from support.servers import silent_server as quiet_server

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "fhir"
TOKEN = "sekmet-test-token"
BINDING_YAML = """
model: diabetes
features:
  BloodPressure:
    kind: observation
    codes: [http://loinc.org|85354-9]
    component: [http://loinc.org|8462-4]
    unit: mm[Hg]
    lookback_days: {lookback}
  BMI: {{kind: observation, codes: [http://loinc.org|39156-5], unit: kg/m2,
         lookback_days: {lookback}}}
  Glucose: {{kind: observation, codes: [http://loinc.org|2339-0], unit: mg/dL,
             lookback_days: {lookback}}}
  Age: {{kind: age}}
  sex: {{kind: gender, levels: {{male: Male, female: Female}}}}
  anemia_or_obesity:
    kind: condition
    codes: [http://snomed.info/sct|271737000, http://snomed.info/sct|162864005]
  Pregnancies: null
"""
BOUND_CODES = {"85354-9", "39156-5", "2339-0", "271737000", "162864005"}


def binding(lookback: str = "null") -> Binding:
    return Binding.from_yaml(BINDING_YAML.format(lookback=lookback))


def bundle(n: int) -> dict:
    return json.loads((FIXTURES / f"patient-{n}.json").read_text())


def bound(resource: dict) -> tuple[str, str, str]:
    """What identifies a fetched resource across servers: type, code, and date."""
    when = resource.get("effectiveDateTime") or resource.get("onsetDateTime") or ""
    return resource["resourceType"], resource["code"]["coding"][0]["code"], when


def expected(n: int, since: str = "") -> Counter:
    """The bound Observations (on or after ``since``) and Conditions in fixture ``n``."""
    found = Counter()
    for entry in bundle(n)["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] in ("Observation", "Condition"):
            key = bound(resource)
            if key[1] in BOUND_CODES and (key[0] == "Condition" or key[2] >= since):
                found[key] += 1
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    with running_fhir_server(tmp_path_factory.mktemp("sekmet"), tokens=[TOKEN]) as server:
        yield server


@pytest.fixture(scope="module")
def patients(server: FhirServer) -> dict[int, str]:
    """Fixture number → the id the server gave the patient."""
    return {n: server.load(bundle(n)) for n in (1, 2, 3)}


class Counting(httpx.BaseTransport):
    """A real HTTP transport that remembers the URLs it sent."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.urls: list[httpx.URL] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(request.url)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_fetches_the_patient_and_the_bound_resources_of_that_patient_only(
    server: FhirServer, patients: dict[int, str]
) -> None:
    with FhirClient(server.base_url, token=TOKEN) as client:
        for n, patient_id in patients.items():
            resources = client.patient_resources(patient_id, binding())
            patient, rest = resources[0], resources[1:]
            assert patient["resourceType"] == "Patient" and patient["id"] == patient_id
            assert patient["birthDate"] == bundle(n)["entry"][0]["resource"]["birthDate"]
            assert Counter(bound(r) for r in rest) == expected(n)
            assert {r["subject"]["reference"] for r in rest} == {f"Patient/{patient_id}"}


def test_a_patient_without_glucose_gets_none(server: FhirServer, patients: dict[int, str]) -> None:
    with FhirClient(server.base_url, token=TOKEN) as client:
        resources = client.patient_resources(patients[2], binding())
    codes = {bound(r)[1] for r in resources[1:]}
    assert "2339-0" not in codes and {"85354-9", "39156-5"} <= codes


def test_observations_come_newest_first(server: FhirServer, patients: dict[int, str]) -> None:
    with FhirClient(server.base_url, token=TOKEN) as client:
        resources = client.patient_resources(patients[1], binding())
    dates = [r["effectiveDateTime"] for r in resources if r["resourceType"] == "Observation"]
    assert dates == sorted(dates, reverse=True)


def test_the_lookback_leaves_older_observations_on_the_server(
    server: FhirServer, patients: dict[int, str]
) -> None:
    # Patient 1's newest observations are of 2024-05-03, the ones before of 2022-06-17;
    # 400 days before 2025-06-01 is 2024-04-27, so only the newest visit's are fetched.
    at = datetime(2025, 6, 1, tzinfo=UTC)
    with FhirClient(server.base_url, token=TOKEN) as client:
        resources = client.patient_resources(patients[1], binding("400"), at=at)
    assert Counter(bound(r) for r in resources[1:]) == expected(1, since="2024-04-27")
    assert len(expected(1, since="2024-04-27")) < len(expected(1))


def test_a_search_is_followed_over_several_pages(
    server: FhirServer, patients: dict[int, str]
) -> None:
    transport = Counting()
    with FhirClient(server.base_url, token=TOKEN, page_size=2, transport=transport) as client:
        resources = client.patient_resources(patients[1], binding())
    assert Counter(bound(r) for r in resources[1:]) == expected(1)
    # Patient, 12 Observations in pages of 2, 2 Conditions in one page.
    assert len(transport.urls) == 1 + 6 + 1
    assert all(str(url).startswith(server.base_url) for url in transport.urls)


def test_more_pages_than_allowed_is_refused_as_too_large(
    server: FhirServer, patients: dict[int, str]
) -> None:
    with (
        FhirClient(server.base_url, token=TOKEN, page_size=2, max_pages=3) as client,
        pytest.raises(UpstreamUnavailable, match="too large"),
    ):
        client.patient_resources(patients[1], binding())


def test_an_unknown_patient_is_not_found(server: FhirServer, patients: dict[int, str]) -> None:
    with (
        FhirClient(server.base_url, token=TOKEN) as client,
        pytest.raises(ResourceNotFound, match="no Patient/no-such-patient"),
    ):
        client.patient_resources("no-such-patient", binding())


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_refused_credentials_say_so(
    server: FhirServer, patients: dict[int, str], token: str | None
) -> None:
    with FhirClient(server.base_url, token=token) as client:
        with pytest.raises(UpstreamUnavailable, match="refused medserve's credentials") as error:
            client.patient_resources(patients[1], binding())
    assert not isinstance(error.value, UpstreamTimeout)
    assert "fhir_server_token" in str(error.value)


@pytest.mark.parametrize(
    "patient_id", ["", "a/b", "../Patient", "x" * 65, "a b", "a?b=1", "Patient/1", "ü"]
)
def test_an_id_that_is_not_a_fhir_id_is_refused_before_any_request(patient_id: str) -> None:
    transport = Counting()
    with FhirClient("http://127.0.0.1:9/fhir", transport=transport) as client:
        with pytest.raises(FhirError, match="not a FHIR id"):
            client.patient_resources(patient_id, binding())
    assert transport.urls == []


def test_a_closed_port_is_unavailable_not_a_timeout() -> None:
    with FhirClient(f"http://127.0.0.1:{free_port()}/fhir", timeout_s=5) as client:
        with pytest.raises(UpstreamUnavailable, match="could not be reached") as error:
            client.patient_resources("1", binding())
    assert not isinstance(error.value, UpstreamTimeout)


@pytest.fixture
def silent_server() -> Iterator[str]:
    with quiet_server() as url:
        yield url


def test_a_server_that_never_answers_times_out(silent_server: str) -> None:
    with FhirClient(silent_server, timeout_s=0.5) as client:
        with pytest.raises(UpstreamTimeout, match="did not answer the Patient read within 0.5 s"):
            client.patient_resources("1", binding())


def scripted(bundle_for: dict[str, dict | bytes], seen: list[httpx.URL]) -> httpx.MockTransport:
    """A server that answers each path with its document (a misbehaving one, scripted)."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        answer = bundle_for.get(request.url.path)
        if answer is None:
            return httpx.Response(404)
        if isinstance(answer, bytes):
            return httpx.Response(200, content=answer, headers={"Content-Type": "text/html"})
        return httpx.Response(200, json=answer)

    return httpx.MockTransport(handle)


PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1970-01-01"}


def searchset(next_url: str | None) -> dict:
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": []}


@pytest.mark.parametrize(
    "next_url",
    [
        "http://elsewhere.example/fhir/Observation?page=2",
        "http://ehr.example:8080/fhir/Observation?page=2",
        "https://ehr.example/fhir/Observation?page=2",
        "http://ehr.example/other/Observation?page=2",
        "http://user:pw@ehr.example/fhir/Observation?page=2",
    ],
)
def test_a_next_link_off_the_servers_base_is_not_followed(next_url: str) -> None:
    seen: list[httpx.URL] = []
    answers = {"/fhir/Patient/p1": PATIENT, "/fhir/Observation": searchset(next_url)}
    with FhirClient("http://ehr.example/fhir", transport=scripted(answers, seen)) as client:
        with pytest.raises(UpstreamUnavailable, match="next-page link .* off its own base"):
            client.patient_resources("p1", binding())
    assert [url.path for url in seen] == ["/fhir/Patient/p1", "/fhir/Observation"]


def test_a_relative_next_link_on_the_base_is_followed() -> None:
    seen: list[httpx.URL] = []
    answers = {
        "/fhir/Patient/p1": PATIENT,
        "/fhir/Observation": searchset("Observation2?page=2"),
        "/fhir/Observation2": searchset(None),
        "/fhir/Condition": searchset(None),
    }
    with FhirClient("http://ehr.example/fhir", transport=scripted(answers, seen)) as client:
        assert client.patient_resources("p1", binding()) == [PATIENT]
    assert [url.path for url in seen][-2:] == ["/fhir/Observation2", "/fhir/Condition"]


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"/fhir/Patient/p1": b"<html>login</html>"}, "other than FHIR JSON"),
        ({"/fhir/Patient/p1": {"resourceType": "Bundle"}}, "with a Bundle, not a Patient"),
        ({"/fhir/Patient/p1": PATIENT, "/fhir/Observation": PATIENT}, "not a Bundle"),
        ({"/fhir/Patient/p1": PATIENT}, "Observation search with HTTP 404"),
    ],
)
def test_an_answer_that_is_not_what_fhir_promises_is_unavailable(
    answers: dict, message: str
) -> None:
    with FhirClient("http://ehr.example/fhir", transport=scripted(answers, [])) as client:
        with pytest.raises(UpstreamUnavailable, match=message):
            client.patient_resources("p1", binding())


def test_a_server_error_status_is_named() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(503))
    with FhirClient("http://ehr.example/fhir", transport=transport) as client:
        with pytest.raises(UpstreamUnavailable, match="Patient read with HTTP 503"):
            client.patient_resources("p1", binding())


def test_resources_about_another_patient_are_left_out() -> None:
    other = {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p2"}}
    mine = {"resourceType": "Observation", "id": "o2", "subject": {"reference": "Patient/p1"}}
    page = {"resourceType": "Bundle", "entry": [{"resource": other}, {"resource": mine}]}
    answers = {
        "/fhir/Patient/p1": PATIENT,
        "/fhir/Observation": page,
        "/fhir/Condition": searchset(None),
    }
    with FhirClient("http://ehr.example/fhir", transport=scripted(answers, [])) as client:
        assert client.patient_resources("p1", binding()) == [PATIENT, mine]


@pytest.mark.parametrize(
    "base_url", ["ftp://ehr.example/fhir", "ehr.example/fhir", "http://u:p@ehr.example/fhir"]
)
def test_a_base_that_is_not_an_http_url_is_a_config_error(base_url: str) -> None:
    with pytest.raises(ConfigError):
        FhirClient(base_url)


@pytest.mark.parametrize(
    ("page", "wrong"),
    [
        ({"resourceType": "Bundle", "entry": 5}, "whose entry is not a list"),
        ({"resourceType": "Bundle", "entry": {"resource": PATIENT}}, "whose entry is not a list"),
        (
            {"resourceType": "Bundle", "entry": ["Observation/o1"]},
            "with an entry that is not an object",
        ),
        (
            {"resourceType": "Bundle", "entry": [{"resource": "Observation/o1"}]},
            "with an entry's resource not an object",
        ),
        (
            {"resourceType": "Bundle", "entry": [{"resource": PATIENT, "search": "match"}]},
            "with an entry's search not an object",
        ),
        ({"resourceType": "Bundle", "link": 5}, "whose link is not a list"),
        ({"resourceType": "Bundle", "link": ["next"]}, "with a link that is not an object"),
        (
            {"resourceType": "Bundle", "link": [{"relation": "next", "url": 2}]},
            "with a next link's url not a string",
        ),
    ],
)
def test_a_wrongly_shaped_bundle_is_unavailable_in_one_line(page: dict, wrong: str) -> None:
    answers = {"/fhir/Patient/p1": PATIENT, "/fhir/Observation": page}
    with FhirClient("http://ehr.example/fhir", transport=scripted(answers, [])) as client:
        with pytest.raises(UpstreamUnavailable) as error:
            client.patient_resources("p1", binding())
    message = str(error.value)
    assert message == (
        "the FHIR server at http://ehr.example/fhir answered the Observation search with a "
        f"Bundle {wrong}"
    )
    assert "Observation/o1" not in message and "match" not in message.split("Bundle")[1]


def test_a_bundle_without_entry_or_link_is_an_empty_page() -> None:
    answers = {
        "/fhir/Patient/p1": PATIENT,
        "/fhir/Observation": {"resourceType": "Bundle", "entry": None, "link": None},
        "/fhir/Condition": {"resourceType": "Bundle", "entry": [{"fullUrl": "urn:x"}]},
    }
    with FhirClient("http://ehr.example/fhir", transport=scripted(answers, [])) as client:
        assert client.patient_resources("p1", binding()) == [PATIENT]


@pytest.fixture
def dripping_server() -> Iterator[str]:
    """An HTTP server that sends a response head at once, then its 40-byte body one byte
    every 0.1 s: no single read waits long, but the whole answer takes 4 s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection = listener.accept()[0]
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                    "Content-Length: 40\r\n\r\n"
                )
                try:
                    connection.sendall(head.encode())
                    for _ in range(40):
                        if stop.wait(0.1):
                            return
                        connection.sendall(b" ")
                except OSError:  # the client gave up and hung up
                    continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/fhir"
    stop.set()
    thread.join()
    listener.close()


def test_a_server_dripping_its_answer_is_cut_off_at_the_deadline(dripping_server: str) -> None:
    # Each read waits 0.1 s, well within timeout_s; the call's deadline (3 × 0.5 s) is
    # what stops it, long before the body would be complete.
    with FhirClient(dripping_server, timeout_s=0.5) as client:
        assert client.deadline_s == 1.5
        with pytest.raises(UpstreamTimeout, match="did not answer within 1.5 s") as error:
            client.patient_resources("1", binding())
    assert "Patient read" in str(error.value)


def test_the_deadline_covers_every_page_of_the_call() -> None:
    """Each page comes quickly, but pages keep coming: the deadline is for the whole call."""
    seen: list[httpx.URL] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        time.sleep(0.1)
        if request.url.path == "/fhir/Patient/p1":
            return httpx.Response(200, json=PATIENT)
        return httpx.Response(200, json=searchset(f"Observation?page={len(seen)}"))

    transport = httpx.MockTransport(handle)
    with FhirClient(
        "http://ehr.example/fhir", timeout_s=5, deadline_s=0.35, transport=transport
    ) as client:
        with pytest.raises(UpstreamTimeout, match="did not answer within 0.35 s"):
            client.patient_resources("p1", binding())
    assert 2 <= len(seen) < 20  # stopped between pages, not at max_pages


@pytest.mark.parametrize("deadline_s", [0, -1.0])
def test_a_deadline_that_is_not_positive_is_a_config_error(deadline_s: float) -> None:
    with pytest.raises(ConfigError, match="deadline must be positive"):
        FhirClient("http://ehr.example/fhir", deadline_s=deadline_s)

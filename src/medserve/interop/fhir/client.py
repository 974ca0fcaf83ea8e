"""A FHIR R4 REST client that fetches what a binding needs of one patient's record: the
Patient, and the Observations and Conditions with the binding's codes, searched by code
and date and followed page by page.

It never hangs: every connect, read, write and pool wait is bounded, and so is each
``patient_resources`` call as a whole (a server dripping its answer byte by byte is cut
off at the call's deadline). It follows next-page
links only on the server's own base (a next link elsewhere could aim medserve's
credentials at another host), and says in one line what went wrong: the server could not
be reached, was too slow, refused the credentials, or answered with something not FHIR.
Nothing it logs identifies a patient.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType

import httpx

from medserve.errors import (
    ConfigError,
    FhirError,
    ResourceNotFound,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from medserve.interop.fhir.binding import Binding, ConditionSource, ObservationSource

log = logging.getLogger("medserve.interop.fhir")

# FHIR's id datatype: http://hl7.org/fhir/R4/datatypes.html#id
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
FHIR_JSON = "application/fhir+json"
# Codes per search: a comma-separated token list longer than this is split over several
# searches, so no URL grows past what servers and proxies accept.
CODES_PER_SEARCH = 20
DEFAULT_PAGE_SIZE = 100
# The most a single page may weigh: a record is kilobytes, so this is a broken server.
MAX_PAGE_BYTES = 32 * 1024 * 1024


class FhirClient:
    """Reads from the FHIR R4 server at ``base_url`` ("https://ehr.example/fhir"), as
    ``token`` (a bearer token) when given. A search is followed for at most
    ``max_pages`` pages of ``page_size`` resources.

    Two bounds keep a slow server from holding a caller: ``timeout_s`` for each connect,
    each read and each write of a request (a server silent that long is cut off), and
    ``deadline_s`` (default: three times ``timeout_s``) for one ``patient_resources``
    call as a whole, every request and page of it, checked as each response body comes
    in and before each request. Past either, UpstreamTimeout."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        deadline_s: float | None = None,
        max_pages: int = 20,
        page_size: int = DEFAULT_PAGE_SIZE,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = _checked_base(base_url)
        if timeout_s <= 0:
            raise ConfigError(f"the FHIR timeout must be positive, not {timeout_s}")
        deadline_s = 3 * timeout_s if deadline_s is None else deadline_s
        if deadline_s <= 0:
            raise ConfigError(f"the FHIR deadline must be positive, not {deadline_s}")
        if max_pages < 1 or not 1 <= page_size <= 1000:
            raise ConfigError("a FHIR search needs max_pages ≥ 1 and page_size 1 to 1000")
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.max_pages = max_pages
        self.page_size = page_size
        self._base = httpx.URL(self.base_url)
        # Relative links in a Bundle are relative to the server's base, as a folder.
        self._base_folder = httpx.URL(self.base_url + "/")
        headers = {"Accept": FHIR_JSON}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            transport=transport,
            trust_env=False,
        )

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def patient_resources(
        self, patient_id: str, binding: Binding, *, at: datetime | None = None
    ) -> list[dict]:
        """The Patient ``patient_id``, then its Observations and Conditions carrying the
        binding's codes (Observations newest first, none older than the binding's longest
        lookback before ``at``, default now). ResourceNotFound when the server has no such
        Patient; FhirError when ``patient_id`` is not a FHIR id; UpstreamTimeout when it
        all takes longer than ``deadline_s``."""
        if not isinstance(patient_id, str) or not FHIR_ID.fullmatch(patient_id):
            raise FhirError("the patient id is not a FHIR id: 1 to 64 letters, digits, '-' or '.'")
        at = datetime.now(UTC) if at is None else _aware(at)
        deadline = time.monotonic() + self.deadline_s
        patient = self._read_patient(patient_id, deadline)
        found = [patient]
        requests = 1
        for resource_type, params in self._searches(patient_id, binding, at):
            resources, pages = self._search(resource_type, params, deadline)
            requests += pages
            found += _about(resources, resource_type, patient_id)
        log.debug("fetched %d FHIR resources in %d requests", len(found), requests)
        return _unique(found)

    def _searches(
        self, patient_id: str, binding: Binding, at: datetime
    ) -> Iterator[tuple[str, list[tuple[str, str]]]]:
        """(resource type, search parameters) of each search the binding needs."""
        sources = [source for _, source in binding.bound()]
        observations = [s for s in sources if isinstance(s, ObservationSource)]
        conditions = [s for s in sources if isinstance(s, ConditionSource)]
        paging = [("_count", str(self.page_size))]
        if observations:
            lookbacks = [s.lookback_days for s in observations]
            since: list[tuple[str, str]] = []
            if None not in lookbacks:
                # Whole days and one more (a server may read a date in its own time
                # zone), so the window is never narrower than the binding's: the
                # features' own lookbacks are applied exactly when the values are read.
                longest = max(d for d in lookbacks if d is not None)
                start = at - timedelta(days=longest + 1)
                since = [("date", f"ge{start.astimezone(UTC).date().isoformat()}")]
            for codes in _chunks(_codes(observations)):
                yield (
                    "Observation",
                    [("patient", patient_id), ("code", codes), *since, *paging, ("_sort", "-date")],
                )
        if conditions:
            for codes in _chunks(_codes(conditions)):
                yield "Condition", [("patient", patient_id), ("code", codes), *paging]

    def _read_patient(self, patient_id: str, deadline: float) -> dict:
        response = self._get(
            f"{self.base_url}/Patient/{patient_id}", None, "Patient read", deadline
        )
        if response.status_code in (404, 410):
            # The caller named this patient, so it may read the id; logs never do.
            raise ResourceNotFound(f"no Patient/{patient_id} on the FHIR server")
        self._raise_for_status(response, "Patient read")
        patient = self._json(response, "Patient read")
        if patient.get("resourceType") != "Patient":
            raise UpstreamUnavailable(
                f"the FHIR server at {self.base_url} answered the Patient read with a "
                f"{_kind(patient)}, not a Patient"
            )
        return patient

    def _search(
        self, resource_type: str, params: list[tuple[str, str]], deadline: float
    ) -> tuple[list[dict], int]:
        """Every match of a search, following next-page links; and the pages read."""
        url: str = f"{self.base_url}/{resource_type}"
        query: list[tuple[str, str]] | None = params
        resources: list[dict] = []
        pages = 0
        while True:
            what = f"{resource_type} search"
            response = self._get(url, query, what, deadline)
            self._raise_for_status(response, f"{resource_type} search")
            bundle = self._json(response, f"{resource_type} search")
            if bundle.get("resourceType") != "Bundle":
                raise UpstreamUnavailable(
                    f"the FHIR server at {self.base_url} answered the {resource_type} search "
                    f"with a {_kind(bundle)}, not a Bundle"
                )
            pages += 1
            malformed = f"the FHIR server at {self.base_url} answered the {what} with a Bundle"
            resources += _matches(bundle, malformed)
            link = _next_link(bundle, malformed)
            if link is None:
                return resources, pages
            if pages >= self.max_pages:
                raise UpstreamUnavailable(
                    f"the FHIR server's answer to a {resource_type} search is too large: more "
                    f"than {self.max_pages} pages of {self.page_size}; narrow the binding's "
                    "codes or lookback"
                )
            url, query = self._on_base(link, resource_type), None

    def _on_base(self, link: str, resource_type: str) -> str:
        """The next-page ``link`` once it is on this server's base; refused otherwise."""
        try:
            target = self._base_folder.join(link)
        except httpx.InvalidURL:
            target = None
        base_path = self._base.path.rstrip("/") + "/"
        if (
            target is None
            or target.scheme != self._base.scheme
            or target.host != self._base.host
            or _port(target) != _port(self._base)
            or not target.path.startswith(base_path)
            or target.userinfo
        ):
            raise UpstreamUnavailable(
                f"the FHIR server at {self.base_url} sent a next-page link for the "
                f"{resource_type} search off its own base; medserve follows links only on "
                "the server it was given"
            )
        return str(target)

    def _get(
        self, url: str, params: list[tuple[str, str]] | None, what: str, deadline: float
    ) -> httpx.Response:
        """The response to GET ``url``, its body read (up to MAX_PAGE_BYTES) before
        ``deadline`` (monotonic seconds)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._late(what)
        # No single wait may outlast the call's deadline either.
        wait = min(self.timeout_s, left)
        try:
            with self._http.stream(
                "GET", url, params=params, timeout=httpx.Timeout(wait)
            ) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_PAGE_BYTES:
                        raise UpstreamUnavailable(
                            f"the FHIR server at {self.base_url} answered the {what} "
                            f"with more than {MAX_PAGE_BYTES // (1024 * 1024)} MiB"
                        )
                    if time.monotonic() > deadline:
                        raise self._late(what)
                return httpx.Response(
                    response.status_code,
                    headers=response.headers,
                    content=bytes(body),
                    request=response.request,
                )
        except httpx.TimeoutException:
            if wait < self.timeout_s:
                raise self._late(what) from None
            raise UpstreamTimeout(
                f"the FHIR server at {self.base_url} did not answer the {what} "
                f"within {self.timeout_s:g} s"
            ) from None
        except httpx.ConnectError:
            raise UpstreamUnavailable(
                f"the FHIR server at {self.base_url} could not be reached; check its URL "
                "and that it is up"
            ) from None
        except httpx.HTTPError as error:
            raise UpstreamUnavailable(
                f"the FHIR server at {self.base_url} broke off the {what} ({type(error).__name__})"
            ) from None

    def _late(self, what: str) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"the FHIR server at {self.base_url} did not answer within {self.deadline_s:g} s "
            f"(the whole fetch of the patient's record; it was still on the {what})"
        )

    def _raise_for_status(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status in (401, 403):
            raise UpstreamUnavailable(
                f"the FHIR server at {self.base_url} refused medserve's credentials "
                f"(HTTP {status} on the {what}); check the token it is given (the "
                "fhir_server_token setting, or the EHR's fhirAuthorization)"
            )
        if not 200 <= status < 300:
            raise UpstreamUnavailable(
                f"the FHIR server at {self.base_url} answered the {what} with HTTP {status}"
            )

    def _json(self, response: httpx.Response, what: str) -> dict:
        try:
            document = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict):
            raise UpstreamUnavailable(
                f"the FHIR server at {self.base_url} answered the {what} with something "
                "other than FHIR JSON"
            )
        return document


def _checked_base(base_url: str) -> str:
    try:
        url = httpx.URL(base_url.strip())
    except (httpx.InvalidURL, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host or url.query:
        raise ConfigError(
            "the FHIR server URL must be an http(s) URL with a host and no query, "
            "e.g. https://ehr.example/fhir"
        )
    if url.userinfo:
        raise ConfigError(
            "the FHIR server URL must not carry a user name or password; give medserve "
            "a bearer token instead"
        )
    return str(url.copy_with(fragment=None)).rstrip("/")


def _port(url: httpx.URL) -> int | None:
    return url.port or {"http": 80, "https": 443}.get(url.scheme)


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _codes(sources: Sequence[ObservationSource | ConditionSource]) -> list[str]:
    return list(dict.fromkeys(code for source in sources for code in source.codes))


def _chunks(codes: list[str]) -> Iterator[str]:
    for start in range(0, len(codes), CODES_PER_SEARCH):
        yield ",".join(codes[start : start + CODES_PER_SEARCH])


def _matches(bundle: dict, malformed: str) -> list[dict]:
    """The resources a searchset page matched; the server's notes on the search (an
    OperationOutcome, e.g. a parameter it ignored) are counted in the log, not kept.
    UpstreamUnavailable, ``malformed`` and what is wrong, when the Bundle is not shaped
    as FHIR says (its values are never echoed)."""
    entries = bundle.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise UpstreamUnavailable(f"{malformed} whose entry is not a list")
    matched, notes = [], 0
    for entry in entries:
        if not isinstance(entry, dict):
            raise UpstreamUnavailable(f"{malformed} with an entry that is not an object")
        resource = entry.get("resource")
        if resource is None:  # an entry may carry no resource (FHIR bdl-5)
            continue
        if not isinstance(resource, dict):
            raise UpstreamUnavailable(f"{malformed} with an entry's resource not an object")
        search = entry.get("search")
        if search is None:
            search = {}
        if not isinstance(search, dict):
            raise UpstreamUnavailable(f"{malformed} with an entry's search not an object")
        if resource.get("resourceType") == "OperationOutcome":
            notes += 1
        elif search.get("mode", "match") == "match":
            matched.append(resource)
    if notes:
        log.warning(
            "the FHIR server noted %d issue(s) on a search (e.g. an ignored parameter)", notes
        )
    return matched


def _next_link(bundle: dict, malformed: str) -> str | None:
    links = bundle.get("link")
    if links is None:
        return None
    if not isinstance(links, list):
        raise UpstreamUnavailable(f"{malformed} whose link is not a list")
    for link in links:
        if not isinstance(link, dict):
            raise UpstreamUnavailable(f"{malformed} with a link that is not an object")
        if link.get("relation") == "next" and link.get("url"):
            if not isinstance(link["url"], str):
                raise UpstreamUnavailable(f"{malformed} with a next link's url not a string")
            return link["url"]
    return None


def _about(resources: list[dict], resource_type: str, patient_id: str) -> list[dict]:
    """The resources of ``resource_type`` whose subject is the patient: a server that
    answers with another patient's record must not have it scored as this one's."""
    kept = [
        resource
        for resource in resources
        if resource.get("resourceType") == resource_type and _subject_is(resource, patient_id)
    ]
    if len(kept) < len(resources):
        log.warning(
            "the FHIR server returned %d %s resource(s) not about the patient searched "
            "for; they were left out",
            len(resources) - len(kept),
            resource_type,
        )
    return kept


def _subject_is(resource: dict, patient_id: str) -> bool:
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str):
        return False
    reference = reference.split("/_history/")[0].rstrip("/")
    target = f"Patient/{patient_id}"
    return reference == target or reference.endswith("/" + target)


def _unique(resources: list[dict]) -> list[dict]:
    """Each resource once (pages of a search that shifted while read may repeat one)."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for resource in resources:
        key = (str(resource.get("resourceType")), str(resource.get("id")))
        if resource.get("id") is not None and key in seen:
            continue
        seen.add(key)
        kept.append(resource)
    return kept


def _kind(document: dict) -> str:
    kind = document.get("resourceType")
    return kind if isinstance(kind, str) and kind.isalnum() else "document"

"""Dynamic batching over HTTP, behind a real uvicorn server: concurrent requests to a notes
model are scored in one batch and each gets what it would get alone; an invalid request
gets its own 422 while the others are answered; explained requests are batched too; each
request is still counted as itself, and the batch sizes formed are in /metrics."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from medserve.config import BatchPolicy, Settings
from medserve.flows import TrainRequest, train_and_register
from medserve.http.app import create_app
from medserve.scoring.catalog import ServedModel
from medserve.scoring.predictor import Predictor
from medserve.storage import ModelVersion, Registry
from support.notes import FILLER, RAISING, notes_table

NOTES = [f"{FILLER[i % 4]} {RAISING[i % 3] if i % 2 else ''} Seen on day {i}." for i in range(9)]


@pytest.fixture(scope="module")
def notes_home(tmp_path_factory) -> tuple[Settings, ModelVersion]:
    settings = Settings(home=tmp_path_factory.mktemp("batching") / "home")
    request = TrainRequest(
        data=notes_table(240, seed=4), source_name="notes", name="notes", target="event",
        text=["note"], family="text", deid=True, cv=3, validation="holdout",
    )  # fmt: skip
    return settings, train_and_register(settings, request).version


def alone(settings: Settings, version: ModelVersion, records: list[dict], explain: bool) -> list:
    """What the service answers one request with when nothing is batched."""
    with Registry(settings) as registry:
        served = ServedModel.of(version, registry.load(version))
    predictor = Predictor(settings.bands_for, settings.max_records)
    found = predictor.predict(served, records, explain=explain)
    return [prediction.to_dict() for prediction in found]


def posted_together(url: str, token: str, bodies: list[dict]) -> list[httpx.Response]:
    def post(body: dict) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            return client.post("/v1/models/notes/predict", json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


def close_to(found: object, expected: object) -> bool:
    """Equal answers: labels, bands and texts exactly, numbers to float32 precision (the
    encoder's float32 arithmetic rounds a note padded among others in the 7th digit, as it
    does for the notes of one many-record request). Each prediction's id is its own."""
    if isinstance(expected, dict) and isinstance(found, dict) and "prediction_id" in expected:
        assert len(found.get("prediction_id", "")) == 32
        found = {k: v for k, v in found.items() if k != "prediction_id"}
        expected = {k: v for k, v in expected.items() if k != "prediction_id"}
    if isinstance(expected, float):
        return found == pytest.approx(expected, rel=1e-5, abs=1e-6)
    if isinstance(expected, dict):
        return (
            isinstance(found, dict)
            and found.keys() == expected.keys()
            and all(close_to(found[k], v) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(found, list)
            and len(found) == len(expected)
            and all(close_to(f, e) for f, e in zip(found, expected, strict=True))
        )
    return found == expected


def test_concurrent_requests_form_a_batch_and_an_invalid_one_fails_alone(notes_home, serve_app):
    seeded, version = notes_home
    # Wait up to a minute: the batch goes when its 8 valid requests are in, whatever the timing.
    policy = BatchPolicy(max_size=8, wait_ms=60_000)
    settings = Settings(home=seeded.home, batching={"notes": policy})
    service = serve_app(create_app(settings), settings, server=True)
    bodies = [{"records": [{"age": 40 + i, "note": NOTES[i]}]} for i in range(8)]
    invalid = {"records": [{"age": 50, "note": 17}]}

    answers = posted_together(service.url, service.keys["predictor"], [*bodies, invalid])

    assert [a.status_code for a in answers] == [200] * 8 + [422]
    assert "a note must be text" in answers[8].text
    for answer, body in zip(answers, bodies, strict=False):
        expected = alone(settings, version, body["records"], explain=False)
        assert close_to(answer.json()["predictions"], expected)
    stats = service.app.state.batchers.stats("notes")
    assert stats.requests_per_batch == {8: 1}
    # Each request is audited as itself: one record each, its own status and record count.
    trail = [
        record
        for record in service.app.state.audit.log.export()
        if record["route"] == "/v1/models/{name}/predict"
    ]
    assert sorted(record["status"] for record in trail) == [200] * 8 + [422]
    assert all(record["n_records"] == 1 and record["model"] == "notes" for record in trail)
    with service.client("auditor") as client:
        metrics = client.get("/metrics").text
    assert 'medserve_batch_records_count{model="notes"} 1.0' in metrics
    # Each request is still counted as itself.
    assert 'medserve_scored_records_total{model="notes",version="1"} 8.0' in metrics
    assert 'status="200"' in metrics and 'status="422"' in metrics


def test_explained_requests_are_batched_and_explained_as_alone(notes_home, serve_app):
    seeded, version = notes_home
    settings = Settings(
        home=seeded.home, batching={"notes": BatchPolicy(max_size=4, wait_ms=60_000)}
    )
    service = serve_app(create_app(settings), settings, server=True)
    bodies = [{"records": [{"age": 60 + i, "note": NOTES[i]}], "explain": True} for i in range(4)]

    answers = posted_together(service.url, service.keys["predictor"], bodies)

    assert [a.status_code for a in answers] == [200] * 4
    for answer, body in zip(answers, bodies, strict=True):
        expected = alone(settings, version, body["records"], explain=True)
        found = answer.json()["predictions"]
        assert found[0]["explanation"]["sentences"]["note"]
        assert close_to(found, expected)
    assert service.app.state.batchers.stats("notes").requests_per_batch == {4: 1}


def test_a_notes_model_is_batched_by_default(notes_home, serve_app):
    seeded, _ = notes_home
    settings = Settings(home=seeded.home)
    service = serve_app(create_app(settings), settings)
    with service.client() as client:
        answer = client.post(
            "/v1/models/notes/predict", json={"records": [{"age": 70, "note": NOTES[1]}]}
        )
    assert answer.status_code == 200, answer.text
    assert service.app.state.batchers.stats("notes").requests_per_batch == {1: 1}

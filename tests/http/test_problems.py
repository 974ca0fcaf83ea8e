"""problem+json as RFC 9457 has it, with medserve's extension members: every MedserveError
answers with its stable ``code`` and, when it has one, its ``location``; the status of each
kind of error is the HTTP app's to decide; a request to no route is told where the API is
described."""

from __future__ import annotations

import anyio
import httpx
import pytest
from fastapi import FastAPI

from medserve.errors import (
    AuthError,
    ConfigError,
    DataError,
    ExplanationUnavailable,
    Forbidden,
    IntegrityError,
    Location,
    MedserveError,
    ModelNotFound,
    ModelUnavailable,
    PayloadTooLarge,
    RateLimited,
    RegistryError,
    SchemaError,
    option,
)
from medserve.http.problems import API_DOCUMENT, http_status, install_problem_handlers
from medserve.scoring.predictor import InvalidRecords


def answer_to(error: Exception) -> httpx.Response:
    """The response of an app with medserve's problem handlers to a route raising ``error``."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/fail")
    def fail() -> None:
        raise error

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get("/fail")

    return anyio.run(get)


def test_a_problem_carries_the_errors_code_and_location():
    error = DataError(
        f"target 'num' row 4: 'x' is not a number, so the rule '>0' ({option('positive_if')}) "
        "cannot apply",
        location=Location(column="num", row=4),
    )
    response = answer_to(error)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "https://medserve.dev/problems/dataerror",
        "title": "Unprocessable content",
        "status": 422,
        "detail": "target 'num' row 4: 'x' is not a number, so the rule '>0' (the "
        "'positive_if' option) cannot apply",
        "code": "invalid_data",
        "location": {"option": "positive_if", "column": "num", "row": 4},
    }


def test_a_problem_without_a_location_has_no_location_member():
    problem = answer_to(ModelNotFound("no model named 'nope'")).json()
    assert problem["code"] == "model_not_found" and problem["status"] == 404
    assert "location" not in problem


def test_an_errors_own_code_is_kept():
    error = ConfigError("bad threshold", code="threshold_mismatch")
    assert answer_to(error).json()["code"] == "threshold_mismatch"


# The statuses clients rely on, unchanged since they were first documented.
@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (MedserveError, 400),
        (ConfigError, 400),
        (DataError, 422),
        (SchemaError, 422),
        (InvalidRecords, 422),
        (ModelNotFound, 404),
        (ExplanationUnavailable, 409),
        (PayloadTooLarge, 413),
        (RateLimited, 429),
        (AuthError, 401),
        (Forbidden, 403),
        (IntegrityError, 500),
        (RegistryError, 503),
        (ModelUnavailable, 503),
    ],
)
def test_each_error_has_its_status(kind, status):
    assert http_status(kind) == status


def test_the_service_answers_with_the_code(service, heart_records):
    with service.client() as client:
        response = client.post("/v1/models/nope/predict", json={"records": heart_records[:1]})
    assert response.status_code == 404
    assert response.json()["code"] == "model_not_found"


def test_an_invalid_record_is_located_at_its_record_and_field(service, heart_records):
    records = [heart_records[0], {**heart_records[1], "age": "sixty"}]
    with service.client() as client:
        response = client.post("/v1/models/heart/predict", json={"records": records})
    assert response.status_code == 422
    assert response.json()["location"] == {"record": 1, "field": "age"}


def test_a_request_to_no_route_is_pointed_at_the_openapi_document(service):
    with service.client() as client:
        missing = client.get("/v1/nothing-here")
        document = client.get(API_DOCUMENT)
        docs = client.get("/docs")
    assert missing.status_code == 404
    detail = missing.json()["detail"]
    assert detail.startswith("no route /v1/nothing-here; ")
    assert API_DOCUMENT in detail and "/docs" not in detail
    # What it points at exists (with a key), and what it used to point at does not.
    assert document.status_code == 200 and "openapi" in document.json()
    assert docs.status_code == 404
    with service.client(role=None) as anonymous:
        assert anonymous.get(API_DOCUMENT).status_code == 401

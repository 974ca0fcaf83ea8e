"""Schemathesis generates requests from the OpenAPI document (schema-conforming and
deliberately broken ones) and sends them to a running server: none may get a 5xx.

A real server, not schemathesis's in-process ASGI client: that one holds the app's
lifespan open until the interpreter exits, so the audit writer would outlive the test."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

EXAMPLES_PER_OPERATION = 40


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_server_error(start_service, mode):
    # (schemathesis's pytest plugin does not run under pytest 9; drive its strategies.)
    service = start_service(rate_limit_per_minute=0, server=True)
    schema = schemathesis.openapi.from_dict(service.app.openapi())
    headers = {"Authorization": f"Bearer {service.keys['admin']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    exercised: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case):
            response = case.call(base_url=service.url, headers=headers)
            assert response.status_code < 500, (case.method, case.path, response.text[:500])
            if response.status_code >= 400:
                content_type = response.headers["content-type"][0]
                # FHIR routes answer their own errors as OperationOutcomes.
                kinds = ("application/problem+json",) + (
                    ("application/fhir+json",) if "/fhir" in case.path else ()
                )
                assert content_type.startswith(kinds), content_type

        try:
            check()
            exercised.append(operation.label)
        except Unsatisfiable:  # nothing to break (e.g. a GET without parameters)
            assert mode == GenerationMode.NEGATIVE
    assert "POST /v1/models/{name}/predict" in exercised


def test_openapi_describes_predict_request_and_response(service):
    with service.client("auditor") as client:
        document = client.get("/openapi.json").json()
    assert document == service.app.openapi()
    predict = document["paths"]["/v1/models/{name}/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body.endswith("/PredictRequest")
    ok = predict["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ok.endswith("/PredictResponse")
    assert "422" in predict["responses"] and "401" in predict["responses"]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"

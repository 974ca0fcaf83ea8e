"""FHIR R4: a patient's Bundle in, a RiskAssessment out (``application/fhir+json``); or the
patient's id, with what the binding needs fetched from the configured FHIR server.

Every error is a FHIR OperationOutcome with its 4xx (5xx when the FHIR server fails:
502, 504), the credential checks before the body is read (401, 403, 429) included
(http/problems.py turns those refusals into OperationOutcomes on these routes). The
patient is named in the audit trail only by a keyed pseudonym."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from medserve.errors import ConfigError, FhirError, MedserveError
from medserve.flows.clinical import assess, assessment_resource
from medserve.http.bodies import json_body
from medserve.http.deps import AuditSubject, ClinicalDep, PredictorKey, ScoringDep
from medserve.http.observability import AuditSubject as Subject
from medserve.http.problems import FHIR_MEDIA_TYPE, as_operation_outcome, error_problem
from medserve.http.routes.models import MAX_VERSION, ModelName
from medserve.interop.fhir.extract import PatientRecord, read_bundle, read_resources
from medserve.scoring.catalog import ServedModel

FHIR_JSON = FHIR_MEDIA_TYPE
READS = (FHIR_JSON, "application/json")
router = APIRouter(prefix="/v1/models", tags=["fhir"])
_FHIR_RESPONSES = {
    200: {
        "description": "A FHIR R4 RiskAssessment.",
        "content": {FHIR_JSON: {"schema": {"type": "object"}}},
    },
    **{
        status: {
            "description": "A FHIR OperationOutcome saying what is wrong.",
            "content": {FHIR_JSON: {"schema": {"type": "object"}}},
        }
        for status in (400, 404, 422, 502, 504)
    },
}
_BUNDLE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            media: {"schema": {"type": "object", "description": "A FHIR R4 Bundle."}}
            for media in READS
        },
    }
}
PatientId = Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="The FHIR Patient id.")
VersionQuery = Query(
    default=None, ge=1, le=MAX_VERSION, description="A specific version; default: production."
)


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON


def outcome_response(error: MedserveError) -> JSONResponse:
    """The OperationOutcome for ``error``, with its status."""
    return as_operation_outcome(error_problem(error))


def _bundle(body: bytes, content_type: str | None) -> object:
    media = (content_type or "").partition(";")[0].strip().lower()
    if media not in READS:
        raise FhirError(
            f"send the Bundle as {FHIR_JSON} (or application/json), not "
            f"{repr(media) if media else 'no Content-Type'}"
        )
    return json_body(body, "a FHIR R4 Bundle", FhirError)


async def _answer(
    name: str,
    version: int | None,
    subject: Subject,
    scoring: ScoringDep,
    clinical: ClinicalDep,
    read: Callable[[ServedModel, datetime], PatientRecord],
) -> JSONResponse:
    subject.model, subject.n_records = name, 1

    def work() -> dict:
        served = scoring.catalog.get(name, version)
        subject.model_version = served.version.version
        now = datetime.now(UTC)
        patient = read(served, now)
        subject.patient = clinical.pseudonyms(patient.patient_id)
        assessment = assess(scoring.predictor, served, patient)
        scoring.metrics.records.labels(name, str(served.version.version)).inc()
        scoring.answered(
            served, [patient.record], [assessment.prediction], "fhir", [patient.patient_id]
        )
        return assessment_resource(assessment, occurrence=now)

    try:
        return FhirResponse(await run_in_threadpool(work))
    except MedserveError as error:
        return outcome_response(error)


@router.post(
    "/{name}/fhir",
    response_class=FhirResponse,
    responses=_FHIR_RESPONSES,
    openapi_extra=_BUNDLE_BODY,
    summary="A patient's FHIR Bundle in, a FHIR RiskAssessment out",
)
async def assess_bundle(
    request: Request,
    key: PredictorKey,
    subject: AuditSubject,
    scoring: ScoringDep,
    clinical: ClinicalDep,
    name: str = ModelName,
    version: int | None = VersionQuery,
) -> JSONResponse:
    """The Bundle (any type: collection, searchset, transaction) holds the Patient and the
    resources the model version's binding reads; the RiskAssessment names the model and
    version, and which resource fed which feature."""
    body = await request.body()
    content_type = request.headers.get("content-type")

    def read(served: ServedModel, now: datetime) -> PatientRecord:
        document = _bundle(body, content_type)
        return read_bundle(document, clinical.bindings.of(served), at=now)

    return await _answer(name, version, subject, scoring, clinical, read)


@router.post(
    "/{name}/fhir/Patient/{patient_id}",
    response_class=FhirResponse,
    responses=_FHIR_RESPONSES,
    summary="Score a patient the configured FHIR server holds",
)
async def assess_patient(
    key: PredictorKey,
    subject: AuditSubject,
    scoring: ScoringDep,
    clinical: ClinicalDep,
    name: str = ModelName,
    patient_id: str = PatientId,
    version: int | None = VersionQuery,
) -> JSONResponse:
    """Fetches the Patient and what the binding needs (searched by code and date, paged)
    from MEDSERVE_FHIR_SERVER_URL, then answers as the Bundle route does."""

    def read(served: ServedModel, now: datetime) -> PatientRecord:
        server = clinical.fhir_server
        if server is None:
            raise ConfigError(
                "this service has no FHIR server to read from: its operator sets "
                "MEDSERVE_FHIR_SERVER_URL; or send the Bundle to /v1/models/{name}/fhir"
            )
        binding = clinical.bindings.of(served)
        resources = server.patient_resources(patient_id, binding, at=now)
        return read_resources(resources, binding, at=now, patient_id=patient_id)

    return await _answer(name, version, subject, scoring, clinical, read)

"""CDS Hooks 2.0 (../shared/standards/cds-hooks/): discovery at exactly /cds-services, one
service per hook of each model whose binding opts it in; the service call answers
``{"cards": [...]}``; feedback on a card is stored for monitoring.

The caller is an EHR, proved by the JWT it signed (EhrCallerDep: trusted issuer, key by
``kid``, ``aud`` the URL called, ``exp``/``iat``, ``jti`` never reused), not an API key.
The call uses its prefetch when it carries all of it; else it fetches from ``fhirServer``
with ``fhirAuthorization``; with neither it is answered 412. Every call is audited, with
the issuer and a keyed pseudonym of the patient."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from medserve.config import Settings
from medserve.errors import DataError, ModelNotFound, PrefetchUnavailable
from medserve.flows.clinical import assess, assessment_card, cds_services, nothing_read
from medserve.http.bodies import json_body
from medserve.http.deps import AuditSubject, ClinicalDep, EhrCallerDep, ScoringDep, called_url
from medserve.http.schemas import ERROR_RESPONSES
from medserve.interop.cds_hooks.cards import cards_response
from medserve.interop.cds_hooks.discovery import (
    ServiceEntry,
    discovery_document,
    prefetch_templates,
)
from medserve.interop.cds_hooks.feedback import parse_feedback
from medserve.interop.cds_hooks.request import (
    can_fetch,
    parse_hook_request,
    prefetched_resources,
)
from medserve.interop.fhir.client import FhirClient
from medserve.interop.fhir.extract import read_resources
from medserve.security.ehr_jwt import EhrCaller
from medserve.storage.cds_cards import CardOutcome, IssuedCard

router = APIRouter(prefix="/cds-services", tags=["cds-hooks"], responses=ERROR_RESPONSES)
ServiceId = Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="A CDS Service id.")


def _services(scoring: ScoringDep, clinical: ClinicalDep) -> list[ServiceEntry]:
    catalog = scoring.catalog
    names = [version.name for version in catalog.served_versions()]
    return cds_services(names, catalog.get, clinical.bindings)


def _service(scoring: ScoringDep, clinical: ClinicalDep, service_id: str) -> ServiceEntry:
    for entry in _services(scoring, clinical):
        if entry.id == service_id:
            return entry
    raise ModelNotFound(f"no CDS Service '{service_id}'; GET /cds-services lists them")


def _may_fetch(settings: Settings, caller: EhrCaller, fhir_server: str) -> None:
    """PrefetchUnavailable unless the caller's FHIR server is on its issuer's allow-list:
    medserve fetches (with the EHR's token) only from servers its operator named."""
    trusted = settings.cds_issuers.get(caller.issuer)
    if trusted is None or not trusted.fetches_from(fhir_server):
        raise PrefetchUnavailable(
            "the call lacks the prefetch this service asks for, and its fhirServer is not "
            "one medserve fetches from for this EHR (MEDSERVE_CDS_ISSUERS: fhir_servers); "
            "send the prefetch"
        )


@router.get("", summary="CDS Hooks discovery: the services this server offers")
async def discovery(
    caller: EhrCallerDep, subject: AuditSubject, scoring: ScoringDep, clinical: ClinicalDep
) -> JSONResponse:
    entries = await run_in_threadpool(_services, scoring, clinical)
    return JSONResponse(discovery_document(entries))


@router.post("/{service_id}", summary="A CDS Hooks call: cards for the patient")
async def call_service(
    request: Request,
    caller: EhrCallerDep,
    subject: AuditSubject,
    scoring: ScoringDep,
    clinical: ClinicalDep,
    service_id: str = ServiceId,
) -> JSONResponse:
    body = await request.body()
    settings = request.app.state.settings
    report_base = called_url(settings, request).removesuffix(request.url.path)

    def work() -> dict:
        service = _service(scoring, clinical, service_id)
        subject.model, subject.n_records = service.model, 1
        hook_request = parse_hook_request(json_body(body, "a CDS Hooks request"), service)
        served = scoring.catalog.get(service.model)
        subject.model_version = served.version.version
        binding = clinical.bindings.of(served)
        templates = prefetch_templates(binding, service.hook)
        patient_id = hook_request.context["patientId"]
        now = datetime.now(UTC)
        resources = prefetched_resources(hook_request, templates)
        if resources is None:
            if not can_fetch(hook_request):
                raise PrefetchUnavailable(
                    "the call carries neither the prefetch this service asks for "
                    f"({', '.join(templates)}) nor fhirServer with fhirAuthorization to "
                    "fetch it from"
                )
            _may_fetch(settings, caller, str(hook_request.fhirServer))
            authorization = hook_request.fhirAuthorization
            client = FhirClient(
                str(hook_request.fhirServer),
                token=authorization.access_token if authorization is not None else None,
                timeout_s=settings.fhir_timeout_s,
            )
            try:
                resources = client.patient_resources(patient_id, binding, at=now)
            finally:
                client.close()
        patient = read_resources(resources, binding, at=now, patient_id=patient_id)
        subject.patient = clinical.pseudonyms(patient.patient_id)
        if nothing_read(patient, binding):
            return cards_response([])  # no input of the model is in the record: no card
        assessment = assess(scoring.predictor, served, patient)
        card = assessment_card(
            assessment, service, report_url=f"{report_base}/v1/models/{service.model}/report"
        )
        clinical.cards.issued(
            [
                IssuedCard(
                    uuid=card["uuid"],
                    service_id=service.id,
                    model=served.version.name,
                    model_version=served.version.version,
                    risk=assessment.prediction.risk,
                    band=assessment.prediction.band,
                    issuer=caller.issuer,
                )
            ]
        )
        scoring.metrics.records.labels(service.model, str(served.version.version)).inc()
        scoring.answered(
            served, [patient.record], [assessment.prediction], "cds", [patient.patient_id]
        )
        return cards_response([card])

    return JSONResponse(await run_in_threadpool(work))


@router.post("/{service_id}/feedback", summary="What the clinician did with a card")
async def feedback(
    request: Request,
    caller: EhrCallerDep,
    subject: AuditSubject,
    scoring: ScoringDep,
    clinical: ClinicalDep,
    service_id: str = ServiceId,
) -> JSONResponse:
    body = await request.body()

    def work() -> dict:
        service = _service(scoring, clinical, service_id)
        subject.model = service.model
        items = parse_feedback(json_body(body, "CDS Hooks feedback"))
        subject.n_records = len(items)
        unknown = clinical.cards.unknown(service.id, caller.issuer, [item.card for item in items])
        if unknown:
            raise DataError(
                f"card {unknown[0]} was not issued by service '{service.id}' to this EHR"
                + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            )
        clinical.cards.feedback(
            service.id,
            [
                CardOutcome(
                    card_uuid=item.card,
                    outcome=item.outcome,
                    outcome_at=item.outcomeTimestamp,
                    reasons=item.reason_codes(),
                )
                for item in items
            ],
        )
        return {}

    return JSONResponse(await run_in_threadpool(work))

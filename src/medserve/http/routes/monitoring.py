"""After go-live over HTTP: observed outcomes for earlier predictions in, the monitoring
view (drift, live performance, the shadow's comparison, card feedback) out. Thin shells
over flows/monitor.py; both flush this process's prediction log first, so a prediction
just answered can be given its outcome, and is counted, at once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator
from starlette.concurrency import run_in_threadpool

from medserve.errors import ModelNotFound, RegistryError
from medserve.flows.monitor import Monitoring, OutcomeReport, record_outcomes
from medserve.http.deps import (
    AuditSubject,
    RegistryDep,
    ScoringDep,
    SettingsDep,
    require_role,
)
from medserve.http.routes.models import ModelName
from medserve.http.schemas import ERROR_RESPONSES, MAX_SUBJECT_CHARS
from medserve.security.api_keys import ApiKey
from medserve.storage.predictions import PredictionLog

router = APIRouter(prefix="/v1/models", tags=["monitoring"], responses=ERROR_RESPONSES)

OutcomesKey = Annotated[ApiKey, Depends(require_role("outcomes", "predictor"))]
MonitorKey = Annotated[ApiKey, Depends(require_role("trainer", "auditor"))]
# Outcomes in one request, at most.
MAX_OUTCOMES = 10_000
# Times an outcome may carry: anything else is a typo, not a clinical date.
EARLIEST_YEAR, LATEST_YEAR = 1900, 2200
# How long a request waits for this process's queued predictions to be logged.
FLUSH_WAIT_S = 5.0


class OutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: StrictInt = Field(
        ge=0, le=1, description="The observed outcome: 1 the event happened, 0 it did not."
    )
    prediction_id: str | None = Field(
        default=None, max_length=64, description="The id the prediction was answered with."
    )
    subject: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SUBJECT_CHARS,
        description="Instead of prediction_id: the subject id the predict call carried "
        "(`subjects`); the outcome goes to that subject's latest prediction at or before `at`.",
    )
    at: datetime | None = Field(
        default=None, description="With `subject`: the time the outcome refers to (ISO 8601)."
    )
    observed_at: datetime | None = Field(
        default=None, description="When the outcome was observed (ISO 8601); kept as sent."
    )

    @model_validator(mode="after")
    def _one_way_to_name_it(self) -> OutcomeIn:
        if (self.prediction_id is None) == (self.subject is None):
            raise ValueError("name the prediction by prediction_id, or by subject (and at)")
        if self.prediction_id is not None and self.at is not None:
            raise ValueError("`at` goes with `subject`; a prediction_id names its prediction")
        for moment in (self.at, self.observed_at):
            if moment is None:
                continue
            if moment.tzinfo is None:
                raise ValueError("times need a UTC offset, e.g. 2026-12-02T09:30:00Z")
            try:
                year = moment.astimezone(UTC).year
            except OverflowError:
                year = 0
            if not EARLIEST_YEAR <= year <= LATEST_YEAR:
                raise ValueError(f"times must lie in the years {EARLIEST_YEAR} to {LATEST_YEAR}")
        return self


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "outcomes": [
                        {"prediction_id": "3f2b0c1e9d8a4b7c8e6f5a4b3c2d1e0f", "outcome": 1},
                        {"subject": "MRN-0042", "at": "2026-12-02T09:30:00Z", "outcome": 0},
                    ]
                }
            ]
        },
    )

    outcomes: list[OutcomeIn] = Field(min_length=1, max_length=MAX_OUTCOMES)


class FeedbackResponse(BaseModel):
    model: str
    stored: int
    prediction_ids: list[str]


def _flush(request: Request, *, measure: bool = False) -> None:
    """This process's queued predictions logged (and, with ``measure``, their windows'
    drift measured: the gauges and alerts as of now)."""
    recorder = request.app.state.scoring.recorder
    if recorder is not None and not recorder.flush(FLUSH_WAIT_S, measure=measure):
        raise RegistryError(
            "the prediction log is behind (it could not catch up in time); try again shortly"
        )


@router.post(
    "/{name}/feedback",
    response_model=FeedbackResponse,
    summary="Observed outcomes for earlier predictions",
)
async def feedback(
    body: FeedbackRequest,
    request: Request,
    key: OutcomesKey,
    subject: AuditSubject,
    registry: RegistryDep,
    scoring: ScoringDep,
    name: str = ModelName,
) -> JSONResponse:
    subject.model, subject.n_records = name, len(body.outcomes)
    reports = [
        OutcomeReport(
            outcome=item.outcome,
            prediction_id=item.prediction_id,
            subject=item.subject,
            at=item.at,
            observed_at=item.observed_at,
        )
        for item in body.outcomes
    ]

    def work() -> JSONResponse:
        if scoring.recorder is None or scoring.subjects is None:
            raise RegistryError(
                "the prediction log is off (MEDSERVE_PREDICTION_LOG=false): no outcome can "
                "be matched to a prediction"
            )
        _flush(request)
        versions = registry.versions(name)
        if not versions:  # outcomes still come for an archived model: any version will do
            raise ModelNotFound(f"no model named '{name}'; see GET /v1/models")
        subject.model_version = next((v.version for v in versions if v.stage == "production"), None)
        ids = record_outcomes(PredictionLog(registry.engine), name, reports, scoring.subjects)
        return JSONResponse({"model": name, "stored": len(ids), "prediction_ids": ids})

    return await run_in_threadpool(work)


@router.get("/{name}/monitoring", summary="Drift and live performance")
async def monitoring(
    request: Request,
    key: MonitorKey,
    subject: AuditSubject,
    registry: RegistryDep,
    settings: SettingsDep,
    name: str = ModelName,
) -> JSONResponse:
    subject.model = name

    def work() -> JSONResponse:
        _flush(request, measure=True)
        view = Monitoring(settings, registry).view(name)
        subject.model_version = view["production_version"]
        return JSONResponse(view)

    return await run_in_threadpool(work)

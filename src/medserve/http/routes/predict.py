"""Scoring: validated JSON records → risk, label and risk band, in record order. A thin
shell over scoring's Predictor.

A request of a few records for a model already loaded is scored on the event loop: that
is ~0.15 ms of numpy for one record, less than the hop to a worker thread costs (~0.1 ms
each way on a busy 2-core host, measured with bench/serving.py). Everything else (more
records, explanations, a model to resolve in the registry or to load) runs in a thread."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from medserve.http.deps import AuditSubject, PredictorKey, RequestId, ScoringDep
from medserve.http.routes.models import ModelName
from medserve.http.schemas import ERROR_RESPONSES, PredictRequest, PredictResponse
from medserve.scoring.catalog import ServedModel

router = APIRouter(prefix="/v1/models", tags=["predict"], responses=ERROR_RESPONSES)
# Requests of up to this many records, without explanations, are scored on the event loop
# when their model is loaded (~0.35 ms at most); larger ones go to a thread.
INLINE_RECORDS = 4


@router.post(
    "/{name}/predict",
    response_model=PredictResponse,
    summary="Risk of the event for each record",
)
async def predict(
    body: PredictRequest,
    key: PredictorKey,
    subject: AuditSubject,
    request_id: RequestId,
    scoring: ScoringDep,
    name: str = ModelName,
    version: int | None = Query(
        default=None, ge=1, description="A specific version; default: production."
    ),
) -> JSONResponse:
    records = body.records
    subject.model, subject.n_records = name, len(records)
    catalog, predictor, metrics = scoring.catalog, scoring.predictor, scoring.metrics
    predictor.admit(len(records))

    def answer(served: ServedModel) -> JSONResponse:
        subject.model_version = served.version.version
        predictions = predictor.predict(served, records, explain=body.explain)
        metrics.records.labels(name, str(served.version.version)).inc(len(records))
        return JSONResponse(
            {
                "model": name,
                "version": served.version.version,
                "request_id": request_id,
                "predictions": [prediction.to_dict() for prediction in predictions],
            }
        )

    served = catalog.cached(name, version)
    if served is not None and not body.explain and len(records) <= INLINE_RECORDS:
        return answer(served)
    return await run_in_threadpool(lambda: answer(catalog.get(name, version)))

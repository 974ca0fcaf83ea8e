"""Scoring: validated JSON records → risk, label and risk band, in record order. A thin
shell over scoring's Predictor; plain ``def``, so the work runs in the thread pool."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from medserve.http.deps import (
    AuditSubject,
    CatalogDep,
    MetricsDep,
    PredictorDep,
    PredictorKey,
    RequestId,
)
from medserve.http.routes.models import ModelName
from medserve.http.schemas import ERROR_RESPONSES, PredictRequest, PredictResponse

router = APIRouter(prefix="/v1/models", tags=["predict"], responses=ERROR_RESPONSES)


@router.post(
    "/{name}/predict",
    response_model=PredictResponse,
    summary="Risk of the event for each record",
)
def predict(
    body: PredictRequest,
    key: PredictorKey,
    subject: AuditSubject,
    request_id: RequestId,
    catalog: CatalogDep,
    predictor: PredictorDep,
    metrics: MetricsDep,
    name: str = ModelName,
    version: int | None = Query(
        default=None, ge=1, description="A specific version; default: production."
    ),
) -> JSONResponse:
    records = body.records
    subject.model, subject.n_records = name, len(records)
    predictor.admit(len(records))
    served = catalog.get(name, version)
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

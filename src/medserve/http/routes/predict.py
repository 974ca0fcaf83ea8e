"""Scoring: validated JSON records → risk, label and risk band, in record order."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from medserve.errors import PayloadTooLarge
from medserve.explain import Explanations, explained
from medserve.http.deps import Predictor
from medserve.http.problems import InvalidRecords
from medserve.http.routes.models import ModelName
from medserve.http.schemas import ERROR_RESPONSES, PredictRequest, PredictResponse
from medserve.scoring.catalog import ServedModel
from medserve.scoring.encoding import records_frame

router = APIRouter(prefix="/v1/models", tags=["predict"], responses=ERROR_RESPONSES)
# A request's problems are listed up to this many (the first is in `detail`).
MAX_PROBLEMS_LISTED = 100


@router.post(
    "/{name}/predict",
    response_model=PredictResponse,
    summary="Risk of the event for each record",
)
async def predict(
    request: Request,
    body: PredictRequest,
    key: Predictor,
    name: str = ModelName,
    version: int | None = Query(
        default=None, ge=1, description="A specific version; default: production."
    ),
) -> JSONResponse:
    state = request.app.state
    request.state.model_name = name
    records = body.records
    request.state.n_records = len(records)
    if len(records) > state.settings.max_records:
        raise PayloadTooLarge(
            f"{len(records)} records in one request; the limit is "
            f"{state.settings.max_records} (MEDSERVE_MAX_RECORDS)"
        )
    served = state.catalog.get(name, version)
    request.state.model_version = served.version.version
    problems = served.validator.problems(records)
    if problems:
        raise InvalidRecords([asdict(p) for p in problems[:MAX_PROBLEMS_LISTED]])
    if body.explain:
        risk, explanations = _explained_risk(served, records)
    else:
        risk, explanations = served.scorer.risk(records), None
    threshold = served.version.threshold
    risks = risk.tolist()
    bands = state.settings.risk_bands(risks)
    predictions = [
        {"risk": r, "label": int(r >= threshold), "risk_band": band}
        for r, band in zip(risks, bands, strict=True)
    ]
    if explanations is not None:
        for prediction, explanation in zip(
            predictions, explained(explanations, risks, bands, records, served.schema), strict=True
        ):
            prediction["explanation"] = explanation
    state.metrics.records.labels(name, str(served.version.version)).inc(len(records))
    return JSONResponse(
        {
            "model": name,
            "version": served.version.version,
            "request_id": request.state.request_id,
            "predictions": predictions,
        }
    )


def _explained_risk(served: ServedModel, records: list) -> tuple[np.ndarray, Explanations]:
    """Risk and explanations from one encoding of the records where the fast path allows."""
    explainer = served.explaining()
    scorer = served.scorer
    if scorer.exact_fast_path and explainer.takes_matrix:
        matrix = scorer.matrix(records)
        return scorer.risk_of_matrix(matrix), explainer.explain_matrix(matrix)
    frame = records_frame(served.schema, records)
    return scorer.risk(records), explainer.explain_frame(frame)

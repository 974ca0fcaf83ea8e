"""Scoring: validated JSON records → risk, label and risk band, in record order. A thin
shell over scoring's Predictor.

A request of a few records for a model already loaded is scored on the event loop: that
is ~0.15 ms of numpy for one record, less than the hop to a worker thread costs (~0.1 ms
each way on a busy 2-core host, measured with bench/serving.py). Everything else (more
records, explanations, a model to resolve in the registry or to load) runs in a thread.

The record count is checked as soon as the body is parsed, before the records are
validated (``RecordsCountedFirst``): validating a list of millions of numbers, each one
an error, took ~0.75 s of the event loop for 16 MiB, where parsing took ~0.13 s. Parsing
in a worker thread would not help: ``json.loads`` and pydantic's validation are single C
calls that hold the GIL throughout, so the loop waits just the same (measured: a 16 MiB
body parsed in a thread stopped the loop for as long as the parse). What bounds a body's
cost on the loop is the body limit (MEDSERVE_MAX_BODY_BYTES, ~8 ms of parsing per MiB at
worst) and this count.

A model that is batched (scoring/batching.py: by default those with no fast path, such
as the notes family) has each request's records validated here, then scored together
with other requests' records by its batcher; the request is still accounted, audited and
rate-limited as itself."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from medserve.errors import PayloadTooLarge
from medserve.http.deps import AuditSubject, PredictorKey, RequestId, ScoringDep
from medserve.http.observability import request_record
from medserve.http.routes.models import ModelName
from medserve.http.schemas import ERROR_RESPONSES, PredictRequest, PredictResponse
from medserve.scoring.batching import Batchers
from medserve.scoring.catalog import ServedModel
from medserve.scoring.predictor import Prediction


class _CountedJson(Request):
    """A request whose JSON body is refused (413) when it holds more records than the
    service scores in one request, before FastAPI validates each of them."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            parsed = json.loads(await self.body())
            records = parsed.get("records") if isinstance(parsed, dict) else None
            if isinstance(records, list):
                try:
                    self.app.state.predictor.admit(len(records))
                except PayloadTooLarge as error:
                    subject = request_record(self.scope).subject
                    subject.model = self.path_params.get("name")
                    subject.n_records = len(records)
                    # An HTTPException passes through FastAPI's body parsing untouched.
                    raise HTTPException(413, error.message) from error
            self._json = parsed
        return self._json


class RecordsCountedFirst(APIRoute):
    """A route whose body's record count is checked before its records are validated."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def counted_first(request: Request) -> Response:
            return await handler(_CountedJson(request.scope, request.receive))

        return counted_first


router = APIRouter(
    prefix="/v1/models",
    tags=["predict"],
    responses=ERROR_RESPONSES,
    route_class=RecordsCountedFirst,
)
# Requests of up to this many records, without explanations, are scored on the event loop
# when their model is loaded (~0.35 ms at most); larger ones go to a thread.
INLINE_RECORDS = 4


async def batchers(request: Request) -> Batchers:
    return request.app.state.batchers


BatchersDep = Annotated[Batchers, Depends(batchers)]


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
    batching: BatchersDep,
    name: str = ModelName,
    version: int | None = Query(
        default=None, ge=1, description="A specific version; default: production."
    ),
) -> JSONResponse:
    records = body.records
    subject.model, subject.n_records = name, len(records)
    catalog, predictor, metrics = scoring.catalog, scoring.predictor, scoring.metrics
    predictor.admit(len(records))

    def respond(served: ServedModel, predictions: list[Prediction]) -> JSONResponse:
        metrics.records.labels(name, str(served.version.version)).inc(len(records))
        scoring.answered(served, records, predictions, "rest", body.subjects)
        return JSONResponse(
            {
                "model": name,
                "version": served.version.version,
                "request_id": request_id,
                "predictions": [prediction.to_dict() for prediction in predictions],
            }
        )

    def answer(served: ServedModel) -> JSONResponse:
        subject.model_version = served.version.version
        return respond(served, predictor.predict(served, records, explain=body.explain))

    def answer_unless_batched(served: ServedModel) -> JSONResponse | ServedModel:
        return served if batching.policy_for(served) is not None else answer(served)

    served = catalog.cached(name, version)
    if served is None:
        resolved = await run_in_threadpool(
            lambda: answer_unless_batched(catalog.get(name, version))
        )
        if isinstance(resolved, JSONResponse):
            return resolved
        served = resolved
    batcher = batching.batcher(served, explain=body.explain)
    if batcher is None:
        if not body.explain and len(records) <= INLINE_RECORDS:
            return answer(served)
        return await run_in_threadpool(answer, served)
    # Scored with other requests' records; accounted and audited as this request alone.
    subject.model_version = served.version.version
    predictions = await batcher.predict(records)
    if len(records) <= INLINE_RECORDS:
        return respond(served, predictions)
    return await run_in_threadpool(respond, served, predictions)

"""Prometheus metrics (behind a credential like every route but the health checks)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from medserve.http.deps import AnyKey
from medserve.http.schemas import ERROR_RESPONSES

router = APIRouter(tags=["operations"], responses=ERROR_RESPONSES)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request, key: AnyKey) -> Response:
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )

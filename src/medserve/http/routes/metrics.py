"""Prometheus metrics (behind a credential like every route but the health checks)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from medserve.http.deps import AnyKey, AuditSubject, MetricsDep
from medserve.http.schemas import ERROR_RESPONSES

router = APIRouter(tags=["operations"], responses=ERROR_RESPONSES)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(key: AnyKey, subject: AuditSubject, metrics: MetricsDep) -> Response:
    # Every credentialed route declares an audit subject: who read the metrics, and when.
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

"""Liveness and readiness: the only routes without a credential, and the only ones that
leave no audit record (they touch no model and no patient data)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])
# The routes that need no credential and declare no audit subject.
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The registry answers and models are loaded")
def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    try:
        with state.registry.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # any database failure means "not ready", never a 500
        return JSONResponse({"status": "unavailable", "reason": "registry database"}, 503)
    served = [v.ref for v in state.catalog.served_versions()]
    return JSONResponse(
        {"status": "ready", "models": served, "unavailable": sorted(state.catalog.failures)}
    )

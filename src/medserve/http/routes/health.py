"""Liveness and readiness: the only routes without a credential, and the only ones that
leave no audit record (they touch no model and no patient data).

/readyz answers 503 "unavailable" with a reason when the service would refuse the work it
exists for: the registry database does not answer, or the audit trail cannot be written
(the writer's last write failed, or the audit head is missing or fails its MAC), since
audited requests are then refused (fail closed). Without a credential it names no model:
it says how many are served and how many failed to load."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from medserve.security.audit import AuditLog

router = APIRouter(tags=["health"])
# The routes that need no credential and declare no audit subject.
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The registry answers, the audit trail is writable, models load")
def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    try:
        with state.registry.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # any database failure means "not ready", never a 500
        return JSONResponse({"status": "unavailable", "reason": "registry database"}, 503)
    audit_problem = state.audit.failure or _head_problem(state.audit.log)
    if audit_problem is not None:
        return JSONResponse(
            {"status": "unavailable", "reason": f"audit trail: {audit_problem}"}, 503
        )
    return JSONResponse(
        {
            "status": "ready",
            "models": len(state.catalog.served_versions()),
            "unavailable": len(state.catalog.failures),
        }
    )


def _head_problem(log: AuditLog) -> str | None:
    try:
        return log.head_problem()
    except Exception:  # a database failure here is "not ready" too, never a 500
        return "the audit head cannot be read"

"""The OpenAPI document, behind a credential like everything but the health checks."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from medserve.http.deps import AnyKey, AuditSubject
from medserve.http.schemas import ERROR_RESPONSES

router = APIRouter(tags=["operations"], responses=ERROR_RESPONSES)


@router.get("/openapi.json", summary="The OpenAPI document of this service")
def openapi(request: Request, key: AnyKey, subject: AuditSubject) -> dict[str, Any]:
    # Every credentialed route declares an audit subject: who read the API, and when.
    return request.app.openapi()

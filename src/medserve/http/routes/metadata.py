"""The OpenAPI document, behind a credential like everything but the health checks."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from medserve.http.deps import AnyKey
from medserve.http.schemas import ERROR_RESPONSES

router = APIRouter(tags=["operations"], responses=ERROR_RESPONSES)


@router.get("/openapi.json", summary="The OpenAPI document of this service")
async def openapi(request: Request, key: AnyKey) -> dict[str, Any]:
    return request.app.openapi()

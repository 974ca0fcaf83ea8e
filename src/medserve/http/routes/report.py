"""The model report: JSON by default, the self-contained HTML page when the client asks for
text/html (a browser does). Same credential as the model metadata routes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse, Response

from medserve.flows import stored_report
from medserve.http.deps import AnyKey
from medserve.http.routes.models import ModelName, remember
from medserve.http.schemas import ERROR_RESPONSES
from medserve.reporting.html import CONTENT_SECURITY_POLICY

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES)

HTML = "text/html"
JSON = "application/json"
_REPORT_RESPONSES = {
    200: {
        "description": "The report: JSON (default) or HTML (`Accept: text/html`).",
        "content": {JSON: {"schema": {"type": "object"}}, HTML: {"schema": {"type": "string"}}},
    }
}


def wants_html(accept: str | None) -> bool:
    """True when the Accept header ranks text/html above JSON. JSON is the default: it also
    answers ``*/*`` and ``application/*``, and it wins ties."""
    html = json = 0.0
    for item in (accept or "").split(","):
        media, *parameters = (part.strip().lower() for part in item.split(";"))
        weight = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if media == HTML:
            html = max(html, weight)
        elif media in (JSON, "application/*", "*/*"):
            json = max(json, weight)
    return html > json


async def _report(request: Request, name: str, version: int | None) -> Response:
    ref = name if version is None else f"{name}:{version}"
    remember(request, name, version)
    app_state = request.app.state
    # ModelNotFound (no such model or version, or one registered without a report) becomes
    # a 404 problem+json in the app's handlers. A thread: a missing HTML page is rendered.
    found = await asyncio.to_thread(stored_report, app_state.registry, app_state.settings, ref)
    remember(request, name, found.version.version)
    location = f"/v1/models/{name}/versions/{found.version.version}/report"
    headers = {"Content-Location": location, "Vary": "Accept"}
    if wants_html(request.headers.get("accept")):
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return FileResponse(found.html_path, media_type=f"{HTML}; charset=utf-8", headers=headers)
    return FileResponse(found.json_path, media_type=JSON, headers=headers)


@router.get(
    "/{name}/report",
    summary="The report of the version served by default",
    response_class=Response,
    responses=_REPORT_RESPONSES,
)
async def get_report(request: Request, key: AnyKey, name: str = ModelName) -> Response:
    return await _report(request, name, None)


@router.get(
    "/{name}/versions/{version}/report",
    summary="The report of one version",
    response_class=Response,
    responses=_REPORT_RESPONSES,
)
async def get_version_report(
    request: Request, key: AnyKey, name: str = ModelName, version: int = Path(ge=1)
) -> Response:
    return await _report(request, name, version)

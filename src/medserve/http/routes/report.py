"""The model report: JSON by default, the self-contained HTML page when the client asks for
text/html (a browser does). Same credential as the model metadata routes; plain ``def``
routes, as finding the report queries the registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse, Response

from medserve.config import Settings
from medserve.http.deps import AnyKey, AuditSubject, RegistryDep, SettingsDep
from medserve.http.observability import AuditSubject as Subject
from medserve.http.routes.models import MAX_VERSION, ModelName
from medserve.http.schemas import ERROR_RESPONSES
from medserve.storage import Registry

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


@dataclass(frozen=True)
class ReportReader:
    """What both report routes need: the caller's audit subject, the registry, the
    settings and the Accept header."""

    subject: Subject
    registry: Registry
    settings: Settings
    accept: str | None

    def answer(self, name: str, version: int | None) -> Response:
        # Imported at the first report asked for: the typed reports and the page template
        # cost a server ~10 MB it needs only then.
        from medserve.flows.report import stored_report
        from medserve.reporting.html import CONTENT_SECURITY_POLICY

        ref = name if version is None else f"{name}:{version}"
        self.subject.model, self.subject.model_version = name, version
        # ModelNotFound (no such model or version, or one registered without a report)
        # becomes a 404 problem+json in the app's handlers.
        found = stored_report(self.registry, self.settings, ref)
        self.subject.model_version = found.version.version
        location = f"/v1/models/{name}/versions/{found.version.version}/report"
        headers = {"Content-Location": location, "Vary": "Accept"}
        if wants_html(self.accept):
            headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
            media_type = f"{HTML}; charset=utf-8"
            if found.html_path is None:  # stored without its page: rendered for this answer
                return Response(found.page(), media_type=media_type, headers=headers)
            return FileResponse(found.html_path, media_type=media_type, headers=headers)
        return FileResponse(found.json_path, media_type=JSON, headers=headers)


async def report_reader(
    request: Request,
    key: AnyKey,
    subject: AuditSubject,
    registry: RegistryDep,
    settings: SettingsDep,
) -> ReportReader:
    return ReportReader(subject, registry, settings, request.headers.get("accept"))


Reader = Annotated[ReportReader, Depends(report_reader)]


@router.get(
    "/{name}/report",
    summary="The report of the version served by default",
    response_class=Response,
    responses=_REPORT_RESPONSES,
)
def get_report(reader: Reader, name: str = ModelName) -> Response:
    return reader.answer(name, None)


@router.get(
    "/{name}/versions/{version}/report",
    summary="The report of one version",
    response_class=Response,
    responses=_REPORT_RESPONSES,
)
def get_version_report(
    reader: Reader, name: str = ModelName, version: int = Path(ge=1, le=MAX_VERSION)
) -> Response:
    return reader.answer(name, version)

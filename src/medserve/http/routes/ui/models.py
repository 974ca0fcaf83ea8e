"""The dashboard's models: every version with its stage and key metrics (95% CIs); one
model's versions, two of them side by side, its report embedded; promote and archive for
admins, each behind a confirmation page and a CSRF-checked form. Every role may read
these pages; only admin may stage (the admission middleware refuses the rest, even for a
URL typed by hand). Plain ``def`` routes: they read the registry."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from medserve.errors import MedserveError, ModelNotFound
from medserve.flows.common import outcome_of
from medserve.http.deps import (
    AuditSubject,
    CsrfChecked,
    RegistryDep,
    SettingsDep,
    UiUser,
    require_role,
)
from medserve.http.problems import http_status
from medserve.http.routes.models import MAX_VERSION, ModelName
from medserve.http.routes.ui.pages import PRIVATE_HEADERS, page, router
from medserve.reporting.html import CONTENT_SECURITY_POLICY as REPORT_POLICY
from medserve.security.api_keys import ApiKey
from medserve.security.sessions import UiSession
from medserve.storage import ModelVersion

AdminOnly = Annotated[ApiKey, Depends(require_role())]
# The metrics shown per version (the rest appear when two versions are compared).
KEY_METRICS = ("auroc", "brier", "calibration_slope", "sensitivity", "ppv")
METRIC_LABELS = {
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "brier": "Brier",
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "f1": "F1",
    "calibration_slope": "Calibration slope",
    "calibration_intercept": "Calibration intercept",
}
VersionPath = Annotated[int, Path(ge=1, le=MAX_VERSION)]


def _cell(metric: Any) -> str:
    """'0.842 (0.801–0.880)', or '—' when the version has no such number."""
    if not isinstance(metric, dict) or metric.get("estimate") is None:
        return "—"
    low, high = (metric.get("ci95") or [None, None])[:2]
    interval = f" ({low:.3f}–{high:.3f})" if low is not None and high is not None else ""
    return f"{metric['estimate']:.3f}{interval}"


def _row(version: ModelVersion) -> dict[str, Any]:
    metrics = {name: _cell(value) for name, value in (version.metrics or {}).items()}
    return {
        "name": version.name,
        "version": version.version,
        "stage": version.stage,
        "family": version.family,
        "metrics": metrics,
        "auroc": metrics.get("auroc", "—"),
        "brier": metrics.get("brier", "—"),
        "created": version.created_at.strftime("%Y-%m-%d %H:%M UTC"),
    }


def _refused(session: UiSession, error: MedserveError) -> HTMLResponse:
    return page(
        "error.html.j2", session, status_code=http_status(error), title="Not possible",
        message=error.message,
    )  # fmt: skip


@router.get("/models")
def models_page(session: UiUser, subject: AuditSubject, registry: RegistryDep) -> HTMLResponse:
    versions = sorted(registry.list(), key=lambda v: (v.name, -v.version))
    return page("models.html.j2", session, models=[_row(v) for v in versions])


@router.get("/models/{name}")
def model_page(
    session: UiUser,
    subject: AuditSubject,
    registry: RegistryDep,
    name: str = ModelName,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
    a: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
    b: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
) -> HTMLResponse:
    subject.model = name
    try:
        versions = registry.versions(name)
    except ModelNotFound as error:
        return _refused(session, error)
    if not versions:
        return _refused(session, ModelNotFound(f"no model named '{name}'"))
    by_number = {v.version: v for v in versions}
    production = next((v for v in versions if v.stage == "production"), None)
    shown = by_number.get(version or 0) or production or versions[-1]
    subject.model_version = shown.version
    compared = None
    if a is not None and b is not None and a in by_number and b in by_number and a != b:
        compared = (_row(by_number[a]), _row(by_number[b]))
    all_metrics = [
        m for m in METRIC_LABELS if compared and any(m in c["metrics"] for c in compared)
    ]
    return page(
        "model.html.j2", session, name=name, outcome=outcome_of(shown),
        versions=[_row(v) for v in sorted(versions, key=lambda v: -v.version)],
        metric_names=KEY_METRICS, metric_labels=METRIC_LABELS, compared=compared,
        all_metrics=all_metrics, shown=shown.version, has_report=bool(shown.report_path),
    )  # fmt: skip


@router.get("/models/{name}/versions/{version}/report")
def report_frame(
    session: UiUser,
    subject: AuditSubject,
    registry: RegistryDep,
    settings: SettingsDep,
    version: VersionPath,
    name: str = ModelName,
) -> Response:
    """The version's report page, for the model page's frame (framed by this app only)."""
    from medserve.flows.report import stored_report

    subject.model, subject.model_version = name, version
    try:
        found = stored_report(registry, settings, f"{name}:{version}")
    except MedserveError as error:
        return _refused(session, error)
    headers = {
        **PRIVATE_HEADERS,
        "Content-Security-Policy": f"{REPORT_POLICY}; frame-ancestors 'self'",
    }
    if found.html_path is None:
        return HTMLResponse(found.page(), headers=headers)
    return HTMLResponse(found.html_path.read_text(encoding="utf-8"), headers=headers)


_CONSEQUENCES = {
    "promote": "It will answer every request for {name} from now on (within two seconds on "
    "a running server); the version in production now is archived.",
    "archive": "It will no longer be served or offered; its artifact, report and audit "
    "records are kept.",
}


def _confirm(session: UiSession, name: str, version: int, action: str) -> HTMLResponse:
    return page(
        "confirm.html.j2", session, action=action, ref=f"{name}:{version}", name=name,
        consequence=_CONSEQUENCES[action].format(name=name),
        target=f"/ui/models/{name}/versions/{version}/{action}",
    )  # fmt: skip


Action = Annotated[Literal["promote", "archive"], Path(description="promote or archive")]


@router.get("/models/{name}/versions/{version}/{action}")
def confirm_staging(
    session: UiUser,
    key: AdminOnly,
    subject: AuditSubject,
    registry: RegistryDep,
    version: VersionPath,
    action: Action,
    name: str = ModelName,
) -> HTMLResponse:
    """The confirmation page: what promoting (or archiving) the version will do."""
    subject.model, subject.model_version = name, version
    try:
        registry.get(f"{name}:{version}")
    except MedserveError as error:
        return _refused(session, error)
    return _confirm(session, name, version, action)


@router.post("/models/{name}/versions/{version}/{action}")
def stage_version(
    session: CsrfChecked,
    key: AdminOnly,
    subject: AuditSubject,
    registry: RegistryDep,
    version: VersionPath,
    action: Action,
    name: str = ModelName,
) -> Response:
    """Promote (or archive) the version, once confirmed with the session's CSRF token."""
    subject.model, subject.model_version = name, version
    ref = f"{name}:{version}"
    try:
        registry.promote(ref) if action == "promote" else registry.archive(ref)
    except MedserveError as error:
        return _refused(session, error)
    return RedirectResponse(f"/ui/models/{name}", status_code=303, headers=PRIVATE_HEADERS)

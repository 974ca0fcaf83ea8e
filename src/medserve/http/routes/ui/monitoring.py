"""The dashboard's monitoring page of one model: what `medserve monitor NAME` prints, as
HTML. Drift per window (newest first), live performance per version on the outcomes
sent back (overall and per window), the shadow compared with production on the same
patients, and what clinicians did with the cards.

Everything shown is an aggregate of the prediction log; a window or result with fewer
than MEDSERVE_MONITOR_MIN_N rows reads "suppressed", never a number (not even its n).
For trainers, auditors and admins, as GET /v1/models/{name}/monitoring; like it, the page
first flushes this process's queued predictions, so one just answered is counted. A
plain ``def`` route: it reads the database."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from medserve.errors import MedserveError, ModelNotFound, RegistryError
from medserve.flows.monitor import Monitoring
from medserve.http.deps import AuditSubject, RegistryDep, SettingsDep, UiUser
from medserve.http.problems import http_status
from medserve.http.routes.models import ModelName
from medserve.http.routes.monitoring import FLUSH_WAIT_S, MonitorKey
from medserve.http.routes.ui.pages import page, router
from medserve.security.sessions import UiSession

SUPPRESSED = "suppressed"
# The live performance rows, as the terminal shows them: label, key in the view.
PERFORMANCE_ROWS = (
    ("AUROC", "auroc"),
    ("O:E", "oe_ratio"),
    ("Calibration slope", "calibration_slope"),
    ("Sensitivity", "sensitivity"),
    ("PPV", "ppv"),
    ("Net benefit", "net_benefit"),
)
NO_PROFILE = "trained before monitoring existed or imported: no reference profile"


@router.get("/models/{name}/monitoring")
def monitoring_page(
    request: Request,
    session: UiUser,
    key: MonitorKey,
    subject: AuditSubject,
    registry: RegistryDep,
    settings: SettingsDep,
    name: str = ModelName,
) -> HTMLResponse:
    subject.model = name
    try:
        _flush(request)
        view = Monitoring(settings, registry).view(name)
    except MedserveError as error:
        return _refused(session, error)
    subject.model_version = view["production_version"]
    return page("monitoring.html.j2", session, name=name, **_page_context(view))


def _flush(request: Request) -> None:
    """This process's queued predictions logged and their windows' drift measured."""
    recorder = request.app.state.scoring.recorder
    if recorder is not None and not recorder.flush(FLUSH_WAIT_S, measure=True):
        raise RegistryError(
            "the prediction log is behind (it could not catch up in time); reload shortly"
        )


def _refused(session: UiSession, error: MedserveError) -> HTMLResponse:
    title = "No such model" if isinstance(error, ModelNotFound) else "Not possible"
    return page(
        "error.html.j2", session, status_code=http_status(error), title=title,
        message=error.message,
    )  # fmt: skip


def _page_context(view: dict[str, Any]) -> dict[str, Any]:
    """The view as the template shows it: every number already a string."""
    log = view["log"]
    min_n = view["min_n"]
    return {
        "production_version": view["production_version"],
        "shadow_version": view["shadow_version"],
        "shadow_since": _when(view["shadow_since"]) if view["shadow_since"] else None,
        "window": _duration(view["window_s"]),
        "min_n": min_n,
        "log": log,
        "nothing_logged": log["predictions"] == 0 and log["shadow_predictions"] == 0,
        "drift": [_drift_row(window, min_n) for window in view["drift"]["windows"]],
        "alerts": [alert["message"] for alert in view["drift"]["alerts"]],
        "without_profile": ", ".join(f"v{v}" for v in view["drift"]["versions_without_profile"]),
        "no_profile": NO_PROFILE,
        "performance": _performance(view["performance"]["versions"]),
        "performance_rows": [label for label, _ in PERFORMANCE_ROWS],
        "shadow": _shadow(view["shadow"]),
        "cards": _cards(view["cards"]),
    }


def _drift_row(window: dict[str, Any], min_n: int) -> dict[str, Any]:
    suppressed = window["suppressed"]
    return {
        "start": _when(window["start"]),
        "version": window["version"],
        "n": "–" if suppressed else str(window["n"]),
        "suppressed": f"suppressed (fewer than {min_n})" if suppressed else None,
        "alerts": None if suppressed else _alert_cell(window["alerts"]),
    }


def _alert_cell(alerts: list[dict[str, Any]]) -> str:
    """'none', or how many and the first (the latest window's are all listed below)."""
    if not alerts:
        return "none"
    more = f" (+{len(alerts) - 1} more)" if len(alerts) > 1 else ""
    return f"{len(alerts)}: {alerts[0]['message']}{more}"


def _performance(versions: dict[str, Any]) -> list[dict[str, Any]]:
    """One column per version (newest first): overall n, events, the metrics with 95%
    CIs, the threshold; and its rolling windows, oldest first."""
    shown = []
    for version, result in versions.items():
        overall = result["overall"]
        suppressed = overall["suppressed"]
        shown.append(
            {
                "version": version,
                "suppressed": suppressed,
                "reason": overall.get("reason") if suppressed else None,
                "n": SUPPRESSED if suppressed else str(overall["n"]),
                "events": SUPPRESSED if suppressed else str(overall["events"]),
                "threshold": SUPPRESSED if suppressed else f"{overall['threshold']:.3f}",
                "metrics": {
                    label: SUPPRESSED if suppressed else _cell(overall[key])
                    for label, key in PERFORMANCE_ROWS
                },
                "windows": [_window_cell(window) for window in result["windows"]],
            }
        )
    return shown


def _window_cell(window: dict[str, Any]) -> dict[str, str]:
    if window["suppressed"]:
        return {"start": _when(window["start"]), "n": "–", "auroc": SUPPRESSED}
    return {
        "start": _when(window["start"]),
        "n": str(window["n"]),
        "auroc": _cell(window["auroc"]),
    }


def _shadow(shadow: dict[str, Any] | None) -> dict[str, Any] | None:
    if shadow is None:
        return None
    difference = shadow.get("auroc_difference")
    said = None
    if not shadow["suppressed"] and difference and difference.get("estimate") is not None:
        low, high = difference["ci95"]
        interval = (
            "interval not estimable"
            if low is None or high is None
            else f"95% CI {low:+.3f} to {high:+.3f}"
        )
        said = f"{difference['estimate']:+.3f} ({interval}, paired bootstrap, n {shadow['n']})"
    return {"version": shadow["version"], "sentence": shadow["sentence"], "difference": said}


def _cards(cards: dict[str, Any]) -> dict[str, Any]:
    if cards["suppressed"]:
        return {"suppressed": True, "reason": cards["reason"]}
    reasons = ", ".join(f"{code} {n}" for code, n in sorted(cards["override_reasons"].items()))
    return {
        "suppressed": False,
        "feedback": cards["feedback"],
        "accepted": cards["accepted"],
        "overridden": cards["overridden"],
        "reasons": reasons,
    }


def _cell(metric: dict[str, Any]) -> str:
    """'0.842 (0.801–0.880)'; '—' where the metric is not defined on these outcomes."""
    if not isinstance(metric, dict) or metric.get("estimate") is None:
        return "—"
    low, high = (metric.get("ci95") or [None, None])[:2]
    interval = f" ({low:.3f}–{high:.3f})" if low is not None and high is not None else ""
    return f"{metric['estimate']:.3f}{interval}"


def _when(iso: str) -> str:
    return iso[:16].replace("T", " ")


def _duration(seconds: int) -> str:
    for unit, length in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds % length == 0:
            return f"{seconds // length} {unit}"
    return f"{seconds} s"

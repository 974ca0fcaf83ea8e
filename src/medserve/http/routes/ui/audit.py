"""The dashboard's audit trail, for auditors (and admins): the newest records first, filtered
by day, model, route and status, and a button that verifies the whole hash chain. Each row
shows only who, when and what (the fields in ``SHOWN_FIELDS``): never the request id, the
client's address or a patient pseudonym, which the trail keeps for those holding the
audit key. Plain ``def`` routes: they read the database (the chain check reads all of it).

Filters arrive as text and are checked here, so a wrong one gives this page again with a
message (400), not a JSON validation error."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse

from medserve.http.deps import AuditSubject, CsrfChecked, UiUser, require_role
from medserve.http.routes.ui.pages import page, router
from medserve.security.api_keys import ApiKey
from medserve.security.audit import AuditLog, VerifyResult, export_records
from medserve.security.sessions import UiSession

AuditorKey = Annotated[ApiKey, Depends(require_role("auditor"))]
# What a row of the page shows, in order: who, when, what. Nothing else leaves the trail.
SHOWN_FIELDS = (
    "seq",
    "at",
    "key_id",
    "role",
    "route",
    "method",
    "model",
    "model_version",
    "n_records",
    "status",
)
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
# Longest filter text accepted (the trail's own route column holds 512 characters).
MAX_FILTER_LENGTH = 512
FilterText = Annotated[str, Query()]


@dataclass(frozen=True)
class AuditFilter:
    """Which records the page shows: at or after ``since`` (midnight UTC of a day), of one
    model, whose route contains a text, with one status; the newest ``limit`` of them."""

    since: date | None = None
    model: str | None = None
    route: str | None = None
    status: int | None = None
    limit: int = DEFAULT_LIMIT

    def admits(self, record: dict[str, Any]) -> bool:
        return (
            (self.model is None or record.get("model") == self.model)
            and (self.route is None or self.route in (record.get("route") or ""))
            and (self.status is None or record.get("status") == self.status)
        )

    @property
    def since_moment(self) -> datetime | None:
        if self.since is None:
            return None
        return datetime(self.since.year, self.since.month, self.since.day, tzinfo=UTC)


def parse_filter(since: str, model: str, route: str, status: str, limit: str) -> AuditFilter:
    """The filter from the page's form fields (empty means "any"); ValueError with a
    message for people when one is not what it should be."""
    for label, text in (("model", model), ("route", route)):
        if len(text) > MAX_FILTER_LENGTH:
            raise ValueError(f"the {label} filter has at most {MAX_FILTER_LENGTH} characters")
    try:
        day = date.fromisoformat(since.strip()) if since.strip() else None
    except ValueError:
        raise ValueError(f"'since' must be a day as YYYY-MM-DD, not {since[:32]!r}") from None
    status_code = _whole_number("status", status)
    if status_code is not None and not 100 <= status_code <= 599:
        raise ValueError(f"'status' must be an HTTP status (100–599), not {status_code}")
    shown = _whole_number("limit", limit)
    if shown is not None and not 1 <= shown <= MAX_LIMIT:
        raise ValueError(f"'limit' must be between 1 and {MAX_LIMIT}, not {shown}")
    return AuditFilter(
        since=day,
        model=model.strip() or None,
        route=route.strip() or None,
        status=status_code,
        limit=DEFAULT_LIMIT if shown is None else shown,
    )


def _whole_number(label: str, text: str) -> int | None:
    if not text.strip():
        return None
    if not text.strip().isdigit() or len(text.strip()) > 9:
        raise ValueError(f"'{label}' must be a whole number, not {text[:32]!r}")
    return int(text.strip())


def newest_first(records: Iterable[dict[str, Any]], wanted: AuditFilter) -> list[dict[str, Any]]:
    """The newest ``wanted.limit`` records it admits, newest first, each cut to SHOWN_FIELDS.
    Holds at most ``limit`` records while reading the trail in seq order."""
    kept: deque[dict[str, Any]] = deque(maxlen=wanted.limit)
    for record in records:
        if wanted.admits(record):
            kept.append({name: record.get(name) for name in SHOWN_FIELDS})
    rows = list(reversed(kept))
    for row in rows:
        row["at"] = _shown_time(row["at"])
    return rows


def _shown_time(iso: Any) -> str:
    try:
        return datetime.fromisoformat(str(iso)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return str(iso)


def _records(request: Request, wanted: AuditFilter) -> Iterator[dict[str, Any]]:
    return export_records(request.app.state.registry.engine, wanted.since_moment)


def _audit_log(request: Request) -> AuditLog:
    """The app's own audit log (its writer holds it, keyed with the audit purpose key)."""
    return request.app.state.audit.log


def _audit_page(
    request: Request,
    session: UiSession,
    *,
    fields: dict[str, str],
    verified: VerifyResult | None = None,
) -> HTMLResponse:
    try:
        wanted = parse_filter(**fields)
    except ValueError as error:
        return page("audit.html.j2", session, status_code=400, records=[], fields=fields,
                    error=str(error), verified=verified, limit=DEFAULT_LIMIT)  # fmt: skip
    rows = newest_first(_records(request, wanted), wanted)
    return page("audit.html.j2", session, records=rows, fields=fields, error=None,
                verified=verified, limit=wanted.limit)  # fmt: skip


@router.get("/audit")
def audit_page(
    request: Request,
    session: UiUser,
    key: AuditorKey,
    subject: AuditSubject,
    since: FilterText = "",
    model: FilterText = "",
    route: FilterText = "",
    status: FilterText = "",
    limit: FilterText = "",
) -> HTMLResponse:
    fields = {"since": since, "model": model, "route": route, "status": status, "limit": limit}
    return _audit_page(request, session, fields=fields)


@router.post("/audit/verify")
def verify_chain(
    request: Request, session: CsrfChecked, key: AuditorKey, subject: AuditSubject
) -> HTMLResponse:
    """Recompute every hash, link and MAC of the trail: the page with the outcome, OK and
    how many records were checked, or the first record that cannot be vouched for."""
    result = _audit_log(request).verify()
    fields = dict.fromkeys(("since", "model", "route", "status", "limit"), "")
    return _audit_page(request, session, fields=fields, verified=result)

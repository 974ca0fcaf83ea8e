"""What every dashboard response shares: the page rendered with the signed-in session
(its role, for the navigation; its CSRF token, for the forms), and the headers that keep
it private: no caching anywhere (after sign-out the back button finds nothing), a strict
CSP (scripts and styles from the app alone), no referrer, no framing by others."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from medserve.http.deps import CSRF_FIELD
from medserve.reporting.dashboard import CONTENT_SECURITY_POLICY, render_page, static_file
from medserve.security.sessions import UiSession

PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
}

router = APIRouter(prefix="/ui", include_in_schema=False)


def page(
    template: str, session: UiSession | None, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """``template`` for ``session`` (None on the sign-in page), with the private headers."""
    html = render_page(
        template,
        role=session.key.role if session is not None else None,
        key_name=(session.key.name or session.key.id) if session is not None else None,
        csrf=session.csrf if session is not None else None,
        csrf_field=CSRF_FIELD,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=PRIVATE_HEADERS)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """The dashboard's stylesheet (an allow-list of names, nothing else)."""
    found = static_file(name)
    if found is None:
        return Response(status_code=404, headers={"Cache-Control": "no-store"})
    content, media_type = found
    return Response(
        content,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )

"""Signing in and out of the dashboard. Sign-in takes an API key once, in a form, and
answers with a session cookie: HttpOnly (no script reads it), SameSite=Strict (no other
site's page sends it), Secure when the service is reached over TLS, Path=/ui, and
expiring with the session (MEDSERVE_UI_SESSION_S). The key itself is never stored or put
in a cookie.

The sign-in form carries a token that its own short-lived cookie must match (a page of
another site cannot sign a browser in as someone else); a wrong key counts against the
client's address, as a request with a wrong bearer key does. Sign-out deletes the
session on the server, so the cookie is worthless even if kept."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from medserve.errors import RateLimited
from medserve.http.deps import (
    SESSION_COOKIE,
    UI_PREFIX,
    UI_SIGN_IN,
    AuditSubject,
    CsrfChecked,
    count_address,
    session_cookie,
)
from medserve.http.observability import request_record
from medserve.http.routes.ui.pages import PRIVATE_HEADERS, page, router
from medserve.security.api_keys import MAX_NAME_LENGTH, TOKEN_LENGTH
from medserve.security.sessions import UiSessions

SIGN_IN_COOKIE = "medserve_sign_in"
SIGN_IN_COOKIE_S = 600
HOME = f"{UI_PREFIX}/models"


def _sessions(request: Request) -> UiSessions:
    return request.app.state.ui_sessions


Sessions = Annotated[UiSessions, Depends(_sessions)]


def _secure(request: Request) -> bool:
    """Cookies marked Secure when the service is reached over TLS (or says it is)."""
    public = request.app.state.settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def _sign_in_page(request: Request, *, error: str | None = None, status_code: int = 200):
    token = secrets.token_urlsafe(24)
    response = page("login.html.j2", None, status_code=status_code, error=error,
                    sign_in_token=token)  # fmt: skip
    response.set_cookie(
        SIGN_IN_COOKIE, token, max_age=SIGN_IN_COOKIE_S, path=UI_SIGN_IN, httponly=True,
        samesite="strict", secure=_secure(request),
    )  # fmt: skip
    return response


async def _over_the_limit(request: Request):
    """The sign-in page with 429 when this address has failed too often; else None."""
    try:
        await count_address(request)
    except RateLimited as limited:
        response = _sign_in_page(request, error=limited.message, status_code=429)
        response.headers["Retry-After"] = str(limited.retry_after_s)
        return response
    return None


@router.get("", include_in_schema=False)
async def ui_home(subject: AuditSubject) -> RedirectResponse:
    return RedirectResponse(HOME, status_code=303, headers={"Cache-Control": "no-store"})


@router.get("/login")
async def sign_in_form(request: Request, subject: AuditSubject):
    """The sign-in page (open: it is where a browser without a session is sent)."""
    return _sign_in_page(request)


@router.post("/login")
async def sign_in(
    request: Request,
    subject: AuditSubject,
    sessions: Sessions,
    api_key: Annotated[str, Form(max_length=TOKEN_LENGTH + MAX_NAME_LENGTH)] = "",
    sign_in_token: Annotated[str, Form(max_length=64)] = "",
):
    """An API key in, a session cookie out (303 to the models); a wrong key, the sign-in
    page again with 401."""
    state = request.app.state
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), sign_in_token.encode()):
        limited = await _over_the_limit(request)  # a forged form counts as a wrong key does
        if limited is not None:
            return limited
        return _sign_in_page(
            request, error="The sign-in form expired: please sign in again.", status_code=403
        )
    key = await run_in_threadpool(state.keys.authenticate, api_key.strip())
    if key is None:
        limited = await _over_the_limit(request)
        if limited is not None:
            return limited
        return _sign_in_page(
            request, error="That API key is not valid or has been revoked.", status_code=401
        )
    request_record(request.scope).key = key  # the sign-in is audited with the key
    # A session this browser had ends: one sign-in, one live session.
    await run_in_threadpool(sessions.close, session_cookie(request.scope))
    token, _ = await run_in_threadpool(sessions.open, key)
    response = RedirectResponse(HOME, status_code=303, headers=PRIVATE_HEADERS)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=int(state.settings.ui_session_s), path=UI_PREFIX,
        httponly=True, samesite="strict", secure=_secure(request),
    )  # fmt: skip
    response.delete_cookie(SIGN_IN_COOKIE, path=UI_SIGN_IN)
    return response


@router.post("/logout")
async def sign_out(
    request: Request, session: CsrfChecked, subject: AuditSubject, sessions: Sessions
) -> RedirectResponse:
    """End the session (on the server too) and go back to the sign-in page."""
    await run_in_threadpool(sessions.close, session_cookie(request.scope))
    response = RedirectResponse(UI_SIGN_IN, status_code=303, headers=PRIVATE_HEADERS)
    response.delete_cookie(SESSION_COOKIE, path=UI_PREFIX)
    return response

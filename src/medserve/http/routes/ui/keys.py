"""The dashboard's API keys, for admins only: every key (revoked ones too), a form that
creates one and shows its token once (the page is never cached: Cache-Control no-store),
and a revoke button per active key, behind a confirmation page and a CSRF-checked form.
The admission middleware refuses every other role, even for a URL typed by hand.

Form fields and the key id in the URL arrive as text and are checked here, so a wrong one
gives this page again with a message (400 or 422), never a JSON validation error. Plain
``def`` routes: they read and write the database."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from medserve.errors import MedserveError
from medserve.http.deps import AuditSubject, CsrfChecked, SettingsDep, UiUser, require_role
from medserve.http.problems import http_status
from medserve.http.routes.ui.pages import PRIVATE_HEADERS, page, router
from medserve.security.api_keys import MAX_NAME_LENGTH, ROLES, ApiKey, ApiKeyStore
from medserve.security.sessions import UiSession

AdminOnly = Annotated[ApiKey, Depends(require_role())]
KEY_ID = re.compile(r"[0-9a-f]{12}")
KEYS_PAGE = "/ui/keys"


def _keys(request: Request) -> ApiKeyStore:
    return request.app.state.keys


Keys = Annotated[ApiKeyStore, Depends(_keys)]


def _row(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "created": key.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        "revoked": key.revoked_at.strftime("%Y-%m-%d %H:%M UTC") if key.revoked_at else None,
    }


def _keys_page(
    session: UiSession,
    keys: ApiKeyStore,
    *,
    status_code: int = 200,
    error: str | None = None,
    created: tuple[ApiKey, str] | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    """The list and the create form; ``created`` the new key and its token, shown once."""
    new_key, token = created if created is not None else (None, None)
    return page(
        "keys.html.j2", session, status_code=status_code, keys=[_row(k) for k in keys.list()],
        roles=ROLES, max_name_length=MAX_NAME_LENGTH, error=error, token=token,
        new_key=_row(new_key) if new_key is not None else None, revoking=None,
        form=form or {"role": "predictor", "name": ""}, own_key=session.key.id,
    )  # fmt: skip


def checked_key_id(key_id: str) -> str | None:
    """``key_id`` when it is a key's id (12 lowercase hex characters), else None."""
    return key_id if KEY_ID.fullmatch(key_id) else None


def form_problem(role: str, name: str) -> str | None:
    """What is wrong with the create form's role and (stripped) name, for people; None
    when nothing is."""
    if role not in ROLES:
        return f"Choose a role: one of {', '.join(ROLES)}."
    if len(name) > MAX_NAME_LENGTH:
        return f"A key name has at most {MAX_NAME_LENGTH} characters."
    if not name.isprintable():
        return "A key name cannot hold control characters."
    return None


def _bad_key_id(session: UiSession, keys: ApiKeyStore) -> HTMLResponse:
    return _keys_page(session, keys, status_code=400,
                      error="That is not a key id: a key id is 12 hex characters.")  # fmt: skip


@router.get("/keys")
def keys_page(session: UiUser, key: AdminOnly, subject: AuditSubject, keys: Keys) -> HTMLResponse:
    return _keys_page(session, keys)


@router.post("/keys")
def create_key(
    session: CsrfChecked,
    key: AdminOnly,
    subject: AuditSubject,
    keys: Keys,
    role: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """A new key; the page shows its token this once (it is stored only as a hash)."""
    form = {"role": role if role in ROLES else "predictor", "name": name[:MAX_NAME_LENGTH]}
    problem = form_problem(role, name.strip())
    if problem is not None:
        return _keys_page(session, keys, status_code=422, form=form, error=problem)
    try:
        created = keys.create(role, name=name.strip() or None)
    except MedserveError as error:
        return _keys_page(session, keys, status_code=http_status(error), form=form,
                          error=error.message)  # fmt: skip
    return _keys_page(session, keys, status_code=201, created=created)


@router.get("/keys/{key_id}/revoke")
def confirm_revoke(
    session: UiUser,
    key: AdminOnly,
    subject: AuditSubject,
    keys: Keys,
    settings: SettingsDep,
    key_id: str,
) -> HTMLResponse:
    if checked_key_id(key_id) is None:
        return _bad_key_id(session, keys)
    try:
        revoking = keys.get(key_id)
    except MedserveError as error:
        return _keys_page(session, keys, status_code=http_status(error), error=error.message)
    return page(
        "keys.html.j2", session, revoking=_row(revoking), own_key=session.key.id,
        target=f"{KEYS_PAGE}/{revoking.id}/revoke", key_cache_s=settings.key_cache_s,
    )  # fmt: skip


@router.post("/keys/{key_id}/revoke")
def revoke_key(
    request: Request,
    session: CsrfChecked,
    key: AdminOnly,
    subject: AuditSubject,
    keys: Keys,
    key_id: str,
) -> Response:
    """Revoke the key: every dashboard session opened with it ends, and it fails
    authentication at once in this process (another replica that has just admitted it
    trusts it for MEDSERVE_KEY_CACHE_S more seconds). A second revoke changes nothing."""
    if checked_key_id(key_id) is None:
        return _bad_key_id(session, keys)
    try:
        keys.revoke(key_id)
        request.app.state.recent_keys.forget(key_id)
    except MedserveError as error:
        return _keys_page(session, keys, status_code=http_status(error), error=error.message)
    return RedirectResponse(KEYS_PAGE, status_code=303, headers=PRIVATE_HEADERS)

"""Credentials before the body: one pure ASGI middleware that decides, from the headers
alone, whether a request may be read at all.

For every path but the open ones (the health checks), before a byte of the body is read:

1. two or more ``Authorization`` headers → 400 (which one would count is ambiguous);
2. no credential, a malformed one, or a key that is unknown or revoked → 401; the key is
   looked up (a database query) on the app's key-lookup threads, never on the event loop,
   unless this process authenticated it within the last ``key_cache_s`` seconds
   (security/key_cache.py: a revoked key is refused at most that long after revocation);
3. each such refusal counts against the client's address (``scope["client"]``, which
   uvicorn sets from a trusted proxy's ``X-Forwarded-For`` when told to): past its limit
   per minute the address gets 429 with ``Retry-After`` instead, so that no address can
   make the service answer (and audit) unauthenticated requests as fast as it can send;
4. a valid key over its own rate limit → 429, as before, but now before the body; a body
   declared over ``max_body_bytes`` → 413; anything while the audit trail cannot be
   written → 503 (each audited with its key: the first whose record is written ends the
   outage);
5. a valid key whose role the matched route does not admit → 403 (each route's roles are
   read once from its dependencies: ``require_role`` in http/deps.py);
6. a body sent to a route that reads JSON, with another media type → 415.

A request that passes goes on with its key in ``scope[ADMITTED_KEY]``, which the
``authenticated`` dependency (http/deps.py) takes instead of querying again. Unknown
paths need a credential too (401 without one): no one learns the route map, and a flood
of them is limited like any other.

For the audit trail, a request refused before its key was known (steps 1-3) keeps
``request_record(scope).key`` None and carries ``scope[PREAUTH_REFUSAL]``: one of
"unauthenticated" (401), "rate_limited" (429 by address) or "duplicate_credentials"
(400), so that the trail can count these in aggregate instead of one record each. The
refused request's route is put in ``scope["route"]`` (as the over-long body refusal
does), so that its metrics and audit name the route it was sent to. Steps 4 to 6 know
the key: they record it in ``request_record(scope).key``, as the dependencies did.

The body of a refused request is never read or parsed. What the client still sends
would be read and dropped by uvicorn to keep the connection; for a request refused
before its key was known whose body is over DRAINED_BODY_BYTES (or of unknown length),
the answer says ``Connection: close`` instead: reading a flood's 16 MiB bodies to the
end kept a legitimate caller's p50 at 4-10x its unloaded value (measured with
bench/unauthenticated_flood.py). A client that writes all of such a body before reading
may then see the connection reset rather than its 401; one with a smaller body, or one
that sends ``Expect: 100-continue`` (curl does, for large bodies), gets the 401."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.routing import BaseRoute, Match

from medserve.errors import AuthError, MedserveError, PayloadTooLarge, RateLimited, RegistryError
from medserve.http.deps import (
    ADMITTED_KEY,
    UI_OPEN_PATHS,
    UI_SESSION,
    UI_SIGN_IN,
    UI_STATIC_PREFIX,
    EhrTokenRequirement,
    RoleRequirement,
    role_refusal,
    session_cookie,
    ui_path,
)
from medserve.http.observability import audit_unavailable, request_record
from medserve.http.problems import error_problem, for_path, http_status, problem
from medserve.security.api_keys import ApiKey, ApiKeyStore
from medserve.security.audit import AuditWriter
from medserve.security.key_cache import RecentKeys
from medserve.security.rate_limit import RateLimiter
from medserve.security.sessions import UiSession, UiSessions

# Why a request was refused before its key was known (for the audit trail).
PREAUTH_REFUSAL = "medserve.preauth_refusal"
DUPLICATE_CREDENTIALS = "duplicate_credentials"
UNAUTHENTICATED = "unauthenticated"
ADDRESS_RATE_LIMITED = "rate_limited"
JSON_MEDIA_TYPE = "application/json"
# A refused key-less request's body up to this size is drained, so the client reads its
# answer on a kept connection; past it, the connection is closed (module docstring).
DRAINED_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class RouteNeeds:
    """What a route asks of a caller before its body is worth reading."""

    roles: frozenset[str] | None  # None: any valid key
    reads_json: bool
    ehr_token: bool = False  # an EHR's signed JWT instead of an API key (CDS Hooks)


def route_needs(dependant: Dependant | None) -> RouteNeeds:
    """The roles every ``require_role`` in the route's dependency tree admits, and whether
    the route reads a JSON body."""
    roles: frozenset[str] | None = None
    reads_json = ehr_token = False
    for node in _walk(dependant):
        if isinstance(node.call, RoleRequirement):
            roles = node.call.allowed if roles is None else roles & node.call.allowed
        reads_json = reads_json or bool(node.body_params)
        ehr_token = ehr_token or isinstance(node.call, EhrTokenRequirement)
    return RouteNeeds(roles, reads_json, ehr_token)


def _walk(dependant: Dependant | None) -> Iterator[Dependant]:
    if dependant is not None:
        yield dependant
        for sub in dependant.dependencies:
            yield from _walk(sub)


class CredentialsBeforeBody:
    """Pure ASGI middleware; see the module docstring. ``routes`` is the app's own (live)
    list, read at the first request, when the app has all its routes."""

    def __init__(
        self,
        app: Callable,
        *,
        routes: Sequence[BaseRoute],
        open_paths: Collection[str],
        keys: ApiKeyStore,
        key_lookups: Executor,
        key_limiter: RateLimiter,
        address_limiter: RateLimiter,
        recent_keys: RecentKeys,
        max_body_bytes: int,
        audit: Callable[[], AuditWriter | None],
        sessions: UiSessions | None = None,
    ) -> None:
        self.app = app
        self._sessions = sessions
        self._routes = routes
        self._open_paths = frozenset(open_paths)
        self._keys = keys
        self._key_lookups = key_lookups
        self._key_limiter = key_limiter
        self._address_limiter = address_limiter
        self._recent = recent_keys
        self._max_body_bytes = max_body_bytes
        self._audit = audit
        self._table: list[tuple[Any, BaseRoute, RouteNeeds]] | None = None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] in self._open_paths:
            await self.app(scope, receive, send)
            return
        if self._sessions is not None and ui_path(scope["path"]):
            await self._admit_ui(scope, receive, send)
            return
        credentials = [value for name, value in scope["headers"] if name == b"authorization"]
        token = _bearer_token(credentials[0]) if len(credentials) == 1 else None
        client = scope.get("client")
        address = client[0] if client else "unknown"
        route, needs = self._match(scope)
        if needs is not None and needs.ehr_token:
            await self._admit_ehr(scope, receive, send, credentials, route)
            return
        recent = self._recent.get(token) if token is not None else None
        if recent is not None and not self._key_limiter.blocking:
            key, error = recent, self._limit(recent)  # nothing to wait for: no thread hop
        else:
            key, error = await asyncio.get_running_loop().run_in_executor(
                self._key_lookups, self._admit, token, address
            )
        response = None
        if key is None:
            if isinstance(error, RateLimited):
                scope[PREAUTH_REFUSAL] = ADDRESS_RATE_LIMITED
                response = error_problem(error)
            elif isinstance(error, RegistryError):  # the key could not be looked up
                response = error_problem(error)
            elif len(credentials) > 1:
                scope[PREAUTH_REFUSAL] = DUPLICATE_CREDENTIALS
                response = problem(
                    400,
                    f"{len(credentials)} Authorization headers: send exactly one, "
                    "'Authorization: Bearer <API key>'",
                    kind="duplicate-credentials",
                    code="duplicate_credentials",
                )
            else:
                assert error is not None  # no key: always a reason
                scope[PREAUTH_REFUSAL] = UNAUTHENTICATED
                response = error_problem(error)
        else:
            if error is None and needs is not None and needs.roles is not None:
                error = role_refusal(key, needs.roles)
            if error is not None:
                response = error_problem(error)
            elif needs is not None and needs.reads_json and _sends_body(scope):
                response = _media_type_refusal(scope)
            if response is None:
                response = self._refusal_of_a_known_key(scope)
            if response is not None:
                request_record(scope).key = key  # refused with a known key: audited with it
        if response is not None:
            if key is None and not _small_body(scope):
                response.headers["Connection"] = "close"
            if route is not None:
                scope["route"] = route  # so that its metrics (and audit) name the route
            response = for_path(scope["path"], response)
            await response(scope, receive, send)
            return
        scope[ADMITTED_KEY] = key
        await self.app(scope, receive, send)

    async def _admit_ui(self, scope: dict, receive: Callable, send: Callable) -> None:
        """The dashboard: its session cookie instead of a bearer key. The sign-in page and
        the static files are open; without a live session a page redirects to sign-in
        (303) and anything else is 401; a live session's key is rate-limited, its role
        checked against the route's, and admitted as a bearer key is."""
        if scope["path"] in UI_OPEN_PATHS or scope["path"].startswith(UI_STATIC_PREFIX):
            refusal = self._refusal_of_a_known_key(scope) if _sends_body(scope) else None
            if refusal is None and _sends_body(scope) and not _form_body(scope):
                refusal = problem(
                    415, "the sign-in form is sent as application/x-www-form-urlencoded",
                    kind="unsupported-media-type", code="unsupported_media_type",
                )  # fmt: skip
            if refusal is not None:  # a body too large, a wrong type, or no audit trail
                if not _small_body(scope):
                    refusal.headers["Connection"] = "close"
                await refusal(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        assert self._sessions is not None
        token = session_cookie(scope)
        route, needs = self._match(scope)
        client = scope.get("client")
        address = client[0] if client else "unknown"
        session, error = await asyncio.get_running_loop().run_in_executor(
            self._key_lookups, self._admit_session, token, address
        )
        response = None
        if session is None:
            scope[PREAUTH_REFUSAL] = (
                ADDRESS_RATE_LIMITED if isinstance(error, RateLimited) else UNAUTHENTICATED
            )
            if scope["method"] in ("GET", "HEAD") and isinstance(error, AuthError):
                response = RedirectResponse(UI_SIGN_IN, status_code=303)
            else:
                assert error is not None
                response = error_problem(error)
        else:
            key = session.key
            error = self._limit(key)
            if error is None and needs is not None and needs.roles is not None:
                error = role_refusal(key, needs.roles)
            response = _ui_refusal(scope, error) if error is not None else None
            if response is None:
                response = self._refusal_of_a_known_key(scope)
            if response is not None:
                request_record(scope).key = key
        if response is not None:
            if route is not None:
                scope["route"] = route
            response.headers["Cache-Control"] = "no-store"
            await response(scope, receive, send)
            return
        scope[ADMITTED_KEY] = session.key
        scope[UI_SESSION] = session
        await self.app(scope, receive, send)

    def _admit_session(
        self, token: str | None, address: str
    ) -> tuple[UiSession | None, MedserveError | None]:
        """On a key-lookup thread: the live session of ``token``, or why there is none (a
        request without one counts against its address, as one without a key does)."""
        assert self._sessions is not None
        try:
            session = self._sessions.resolve(token)
        except RegistryError as unreachable:  # the database is away: 503, not a traceback
            return None, unreachable
        if session is not None:
            return session, None
        try:
            self._address_limiter.check(address)
        except (RateLimited, RegistryError) as limited:  # over it, or a shared store down
            return None, limited
        return None, AuthError("sign in first: the session is missing, has ended, or its key "
                               "was revoked")  # fmt: skip

    async def _admit_ehr(
        self, scope: dict, receive: Callable, send: Callable, credentials: list, route: Any
    ) -> None:
        """A CDS Hooks route: the EHR's token is verified by the route's own dependency
        (EhrTokenRequirement); here only what needs no token: one Authorization header, a
        body under the limit, and an audit trail that can be written."""
        response = None
        if len(credentials) > 1:
            scope[PREAUTH_REFUSAL] = DUPLICATE_CREDENTIALS
            response = problem(
                400,
                f"{len(credentials)} Authorization headers: send exactly one, "
                "'Authorization: Bearer <JWT>'",
                kind="duplicate-credentials",
                code="duplicate_credentials",
            )
        if response is None:
            response = self._refusal_of_a_known_key(scope)
        if response is None and _sends_body(scope):
            response = _media_type_refusal(scope)
        if response is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        await response(scope, receive, send)

    def _admit(self, token: str | None, address: str) -> tuple[ApiKey | None, MedserveError | None]:
        """On a key-lookup thread: the key and, if refused, why. Only a request without a
        valid key counts against its address."""
        key = self._recent.get(token) if token is not None else None
        if key is None and token is not None:
            try:
                key = self._keys.authenticate(token)
            except RegistryError as unreachable:  # the database is away: 503, not a 500
                return None, unreachable
            if key is not None:
                self._recent.put(token, key)
        if key is not None:
            return key, self._limit(key)
        try:
            self._address_limiter.check(address)
        except (RateLimited, RegistryError) as limited:  # over it, or a shared store down
            return None, limited
        return None, AuthError(
            "missing credential: send 'Authorization: Bearer <API key>'"
            if token is None
            else "the API key is not valid or has been revoked"
        )

    def _refusal_of_a_known_key(self, scope: dict) -> Any:
        """What a caller with a valid key may still be refused before the body: a body
        declared over the limit (413), or anything while the audit trail cannot be written
        (503: nothing is answered unaudited)."""
        writer = self._audit()
        if writer is not None and writer.failure is not None:
            return audit_unavailable()
        declared = _content_length(scope)
        if declared is not None and declared > self._max_body_bytes:
            return error_problem(
                PayloadTooLarge(
                    f"request body of {declared} bytes is over the limit of "
                    f"{self._max_body_bytes} bytes; send fewer records per request"
                )
            )
        return None

    def _limit(self, key: ApiKey) -> MedserveError | None:
        """The key's own rate limit: None, or why this request is over it (or cannot be
        counted: a shared limit's store that is down refuses, 503)."""
        try:
            self._key_limiter.check(key.id)
        except (RateLimited, RegistryError) as limited:
            return limited
        return None

    def _match(self, scope: dict) -> tuple[BaseRoute | None, RouteNeeds | None]:
        """The route the request is for (a full match, else the first partial one, e.g. a
        wrong method), and what it needs when the match is full."""
        if self._table is None:
            self._table = [
                (context, context.original_route, route_needs(getattr(context, "dependant", None)))
                for context in iter_route_contexts(self._routes)
            ]
        partial, partial_needs = None, None
        for context, route, needs in self._table:
            match, _ = context.matches(scope)
            if match is Match.FULL:
                return route, needs
            if match is Match.PARTIAL and partial is None:
                partial, partial_needs = route, needs
        # A CDS Hooks path with the wrong method: the router answers it (405), no API key.
        if partial_needs is not None and partial_needs.ehr_token:
            return partial, partial_needs
        return partial, None


def _form_body(scope: dict) -> bool:
    media = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    return media == b"application/x-www-form-urlencoded"


def _ui_refusal(scope: dict, error: MedserveError) -> Any:
    """A dashboard page refused to a signed-in person (a role that may not, too many
    requests): an HTML page with the dashboard's private headers; anything but a page
    read, problem+json."""
    if scope["method"] not in ("GET", "HEAD"):
        return error_problem(error)
    from medserve.reporting.dashboard import CONTENT_SECURITY_POLICY, render_page

    html = render_page(
        "error.html.j2", role=None, key_name=None, csrf=None, csrf_field="csrf",
        title="Not for this key", message=error.message,
    )  # fmt: skip
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Frame-Options": "DENY"}
    return HTMLResponse(html, status_code=http_status(error), headers=headers)


def _bearer_token(value: bytes) -> str | None:
    scheme, _, token = value.decode("latin-1").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _header(scope: dict, name: bytes) -> bytes | None:
    for header, value in scope["headers"]:
        if header == name:
            return value
    return None


def _content_length(scope: dict) -> int | None:
    try:
        return int(_header(scope, b"content-length") or b"")
    except ValueError:
        return None


def _small_body(scope: dict) -> bool:
    """True when the request declares a body of at most DRAINED_BODY_BYTES (or none)."""
    if _header(scope, b"transfer-encoding") is not None:
        return False
    length = _header(scope, b"content-length")
    try:
        return length is None or int(length) <= DRAINED_BODY_BYTES
    except ValueError:
        return False


def _sends_body(scope: dict) -> bool:
    length = _header(scope, b"content-length")
    return _header(scope, b"transfer-encoding") is not None or (
        length is not None and length.strip() not in (b"", b"0")
    )


def _media_type_refusal(scope: dict) -> Any:
    """A 415 unless the body is JSON (``application/json`` or ``application/*+json``)."""
    value = _header(scope, b"content-type")
    media = (value or b"").decode("latin-1").partition(";")[0].strip().lower()
    if media == JSON_MEDIA_TYPE or (media.startswith("application/") and media.endswith("+json")):
        return None
    sent = f"'{media}'" if media else "no Content-Type"
    return problem(
        415,
        f"this route reads {JSON_MEDIA_TYPE}; the request sent {sent}: "
        f"send 'Content-Type: {JSON_MEDIA_TYPE}' and a JSON body",
        kind="unsupported-media-type",
        code="unsupported_media_type",
        headers={"Accept-Post": JSON_MEDIA_TYPE},
    )

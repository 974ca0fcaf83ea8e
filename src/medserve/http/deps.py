"""The dependencies every router shares, as typed ``Annotated`` aliases: who is calling
(bearer API keys, roles, the per-key rate limit), what an audited request touched, and
the service's parts (settings, registry, scoring, metrics).

None of them blocks the event loop: the key lookup (a database query) and the rate limit
(a network call, when shared) are done before the body is read, by the admission
middleware (http/admission.py) on the app's key-lookup threads; the others only read
what the app holds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from medserve.config import Settings
from medserve.errors import AuthError, Forbidden
from medserve.flows.clinical import Bindings, PatientPseudonyms
from medserve.flows.monitor import SubjectPseudonyms
from medserve.http.observability import AuditSubject as Subject
from medserve.http.observability import RequestRecord, ServiceMetrics, request_record
from medserve.interop.fhir.client import FhirClient
from medserve.monitoring.recorder import Answered, PredictionRecorder
from medserve.scoring.catalog import ModelCatalog, ServedModel
from medserve.scoring.encoding import Record
from medserve.scoring.predictor import Prediction, Predictor
from medserve.security.api_keys import ApiKey, ApiKeyStore
from medserve.security.ehr_jwt import EhrCaller, EhrTokenVerifier
from medserve.security.rate_limit import RateLimiter
from medserve.security.sessions import UiSession
from medserve.storage import Registry
from medserve.storage.cds_cards import CardLog

bearer = HTTPBearer(auto_error=False, description="An API key: `medserve keys create`.")


# Where the admission middleware (http/admission.py) leaves the key it has checked.
ADMITTED_KEY = "medserve.admitted_key"
# ... and, for the dashboard (/ui), the session it has checked.
UI_SESSION = "medserve.ui_session"
UI_PREFIX = "/ui"
UI_SIGN_IN = "/ui/login"
UI_STATIC_PREFIX = "/ui/static/"
# Dashboard paths open without a session: the sign-in page (GET, and its POST).
UI_OPEN_PATHS = frozenset({UI_SIGN_IN})
SESSION_COOKIE = "medserve_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


def ui_path(path: str) -> bool:
    """True for the dashboard's paths (/ui and below)."""
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def session_cookie(scope: dict) -> str | None:
    """The dashboard session's token from the request's Cookie header, or None."""
    for name, value in scope["headers"]:
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, token = part.strip().partition("=")
                if key == SESSION_COOKIE and token:
                    return token
    return None


async def ui_session(request: Request) -> UiSession:
    """The signed-in dashboard session (the admission middleware checked it); 401 when a
    route is reached without one."""
    session = request.scope.get(UI_SESSION)
    if session is None:
        raise AuthError("sign in first: the session is missing or has ended")
    request_record(request.scope).key = session.key
    return session


UiUser = Annotated[UiSession, Depends(ui_session)]


async def csrf_checked(request: Request, session: UiUser) -> UiSession:
    """The session, once the request's CSRF token (form field ``csrf`` or header
    X-CSRF-Token) is the session's; 403 otherwise. Every dashboard form that changes
    something takes it."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not session.csrf_matches(sent):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and retry")
    return session


CsrfChecked = Annotated[UiSession, Depends(csrf_checked)]


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey:
    """The calling key, or 401; then the key's rate limit (429). Records the key for the
    audit trail and the access log.

    The app's admission middleware has already checked both, before the body was read,
    and left the key in the scope; only an app without it (a router mounted elsewhere)
    gets here without one. The lookup and the count then run on the app's own small pool
    of key-lookup threads: they block, every request needs them, and they must not queue
    behind scoring in FastAPI's thread pool."""
    record = request_record(request.scope)
    admitted = request.scope.get(ADMITTED_KEY)
    if admitted is not None:
        record.key = admitted
        return admitted
    if credentials is None or not credentials.credentials:
        raise AuthError("missing credential: send 'Authorization: Bearer <API key>'")
    state = request.app.state
    return await asyncio.get_running_loop().run_in_executor(
        state.key_lookups,
        _admitted,
        state.keys,
        state.rate_limiter,
        credentials.credentials,
        record,
    )


def _admitted(keys: ApiKeyStore, limiter: RateLimiter, token: str, record: RequestRecord) -> ApiKey:
    key = keys.authenticate(token)
    if key is None:
        raise AuthError("the API key is not valid or has been revoked")
    record.key = key  # before the count: a refused request is audited with its key
    limiter.check(key.id)
    return key


def role_refusal(key: ApiKey, allowed: frozenset[str]) -> Forbidden | None:
    """Why ``key`` may not use a route that admits ``allowed``; None when it may."""
    if key.role in allowed:
        return None
    return Forbidden(
        f"role '{key.role}' may not do this; it needs one of: {', '.join(sorted(allowed))}"
    )


@dataclass(frozen=True)
class RoleRequirement:
    """A dependency admitting the given roles (admin is always admitted). The admission
    middleware reads ``allowed`` from each route's dependencies, to refuse a wrong role
    before the body is read; this check stays for routes reached without it."""

    allowed: frozenset[str]

    async def __call__(self, key: Annotated[ApiKey, Depends(authenticated)]) -> ApiKey:
        refusal = role_refusal(key, self.allowed)
        if refusal is not None:
            raise refusal
        return key


def require_role(*roles: str) -> RoleRequirement:
    """A dependency admitting the given roles (admin is always admitted)."""
    return RoleRequirement(frozenset({*roles, "admin"}))


@dataclass(frozen=True)
class EhrTokenRequirement:
    """A dependency for the CDS Hooks routes: the caller is an EHR proving itself with a
    JWT it signed (security/ehr_jwt.py), not an API key. The admission middleware reads
    this from each route's dependencies and lets such a request past without a key; the
    token is verified here, on the key-lookup threads (its ``jti`` is written to the
    database), against the exact URL called as its ``aud``."""

    async def __call__(self, request: Request) -> EhrCaller:
        state = request.app.state
        try:
            audience = called_url(state.settings, request)
            return await asyncio.get_running_loop().run_in_executor(
                state.ehr_verifications,
                _verified,
                state.ehr_tokens,
                request.headers.get("authorization"),
                audience,
                request_record(request.scope),
            )
        except AuthError:
            # As for a request without a valid API key: each refusal counts against the
            # client's address, and past its limit it is told to wait (429).
            await count_address(request)
            raise


def _verified(
    verifier: EhrTokenVerifier, authorization: str | None, audience: str, record: RequestRecord
) -> EhrCaller:
    caller = verifier.verify(authorization, audience)
    record.subject.issuer = caller.issuer
    return caller


# Hosts a request may name when no public URL is configured (development on loopback).
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
# A request that went through a proxy: its Host is not where this service listens.
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto")


def called_url(settings: Settings, request: Request) -> str:
    """The URL the request was sent to, as a token's ``aud`` must name it: the configured
    public base URL plus the path. Without one, the URL as received, but only from a caller
    on this machine, naming this machine, and not through a proxy: the Host header is the
    caller's to choose, and a token minted for another service would pass for this one if
    it decided the audience."""
    if settings.public_url:
        return settings.public_url.rstrip("/") + request.url.path
    client = request.client.host if request.client else ""
    forwarded = any(name in request.headers for name in FORWARDING_HEADERS)
    if (
        (request.url.hostname or "").lower() not in LOOPBACK_HOSTS
        or client not in LOOPBACK_HOSTS
        or forwarded
    ):
        raise AuthError(
            "this service checks the EHR token's aud against its public URL, which is not "
            "configured: its operator sets MEDSERVE_PUBLIC_URL (the URL EHRs call)"
        )
    return str(request.url.replace(query=""))


async def audit_subject(request: Request) -> Subject:
    """Declares that the route touches a model or patient data: each of its requests leaves
    exactly one audit record, whatever the outcome. The route fills in the model facts."""
    return request_record(request.scope).subject


async def request_id(request: Request) -> str:
    return request_record(request.scope).request_id


async def app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def model_registry(request: Request) -> Registry:
    return request.app.state.registry


@dataclass(frozen=True)
class Scoring:
    """What a scoring route needs: the served models, the Predictor, the metrics, and the
    prediction log's recorder (None when MEDSERVE_PREDICTION_LOG is off)."""

    catalog: ModelCatalog
    predictor: Predictor
    metrics: ServiceMetrics
    recorder: PredictionRecorder | None = None
    subjects: SubjectPseudonyms | None = None

    def answered(
        self,
        served: ServedModel,
        records: Sequence[Record],
        predictions: Sequence[Prediction],
        channel: str,
        subjects: Sequence[str | None] | None = None,
    ) -> None:
        """Hand what a channel answered to the prediction log (off the response path);
        subject ids are keyed here, so no raw id leaves the request."""
        if self.recorder is None:
            return
        keyed = None
        if subjects is not None and self.subjects is not None:
            keyed = [None if s is None else self.subjects(s) for s in subjects]
        self.recorder.record(Answered(served, records, predictions, channel, keyed))


@dataclass(frozen=True)
class Clinical:
    """What the FHIR and CDS Hooks routes need besides scoring: each version's binding,
    the patient pseudonyms for the audit trail, the card log, the configured FHIR server
    (None when unset)."""

    bindings: Bindings
    pseudonyms: PatientPseudonyms
    cards: CardLog
    fhir_server: FhirClient | None


async def clinical(request: Request) -> Clinical:
    return request.app.state.clinical


async def scoring(request: Request) -> Scoring:
    return request.app.state.scoring


async def service_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


AnyKey = Annotated[ApiKey, Depends(authenticated)]
PredictorKey = Annotated[ApiKey, Depends(require_role("predictor"))]
AuditSubject = Annotated[Subject, Depends(audit_subject)]
EhrCallerDep = Annotated[EhrCaller, Depends(EhrTokenRequirement())]
RequestId = Annotated[str, Depends(request_id)]
SettingsDep = Annotated[Settings, Depends(app_settings)]
RegistryDep = Annotated[Registry, Depends(model_registry)]
ScoringDep = Annotated[Scoring, Depends(scoring)]
ClinicalDep = Annotated[Clinical, Depends(clinical)]
MetricsDep = Annotated[ServiceMetrics, Depends(service_metrics)]


async def count_address(request: Request) -> None:
    """Count a request without a valid credential against its client's address: RateLimited
    (429) past the limit. A shared limit (Redis) is counted on the key-lookup threads."""
    state = request.app.state
    limiter: RateLimiter = state.unauthenticated_limiter
    address = request.client.host if request.client else "unknown"
    if limiter.blocking:
        await asyncio.get_running_loop().run_in_executor(
            state.key_lookups, limiter.check, address
        )
    else:
        limiter.check(address)

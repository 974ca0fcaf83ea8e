"""The dependencies every router shares, as typed ``Annotated`` aliases: who is calling
(bearer API keys, roles, the per-key rate limit), what an audited request touched, and
the service's parts (settings, registry, catalog, predictor, metrics).

Dependencies that block (the key lookup queries the database; a shared rate limiter is a
network call) are plain ``def``: FastAPI runs them in its thread pool. The others only
read what the app holds and stay ``async`` so they cost no thread hop."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from medserve.config import Settings
from medserve.errors import AuthError, Forbidden
from medserve.http.observability import AuditSubject as Subject
from medserve.http.observability import ServiceMetrics, request_record
from medserve.scoring.catalog import ModelCatalog
from medserve.scoring.predictor import Predictor
from medserve.security.api_keys import ApiKey, ApiKeyStore
from medserve.security.rate_limit import RateLimiter
from medserve.storage import Registry

bearer = HTTPBearer(auto_error=False, description="An API key: `medserve keys create`.")


def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey:
    """The calling key, or 401; then the key's rate limit (429). Records the key for the
    audit trail and the access log."""
    if credentials is None or not credentials.credentials:
        raise AuthError("missing credential: send 'Authorization: Bearer <API key>'")
    keys: ApiKeyStore = request.app.state.keys
    key = keys.authenticate(credentials.credentials)
    if key is None:
        raise AuthError("the API key is not valid or has been revoked")
    request_record(request.scope).key = key
    limiter: RateLimiter = request.app.state.rate_limiter
    limiter.check(key.id)
    return key


def require_role(*roles: str) -> Callable[..., Coroutine[Any, Any, ApiKey]]:
    """A dependency admitting the given roles (admin is always admitted)."""
    allowed = {*roles, "admin"}

    async def check(key: Annotated[ApiKey, Depends(authenticated)]) -> ApiKey:
        if key.role not in allowed:
            raise Forbidden(
                f"role '{key.role}' may not do this; it needs one of: {', '.join(sorted(allowed))}"
            )
        return key

    return check


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


async def model_catalog(request: Request) -> ModelCatalog:
    return request.app.state.catalog


async def predictor(request: Request) -> Predictor:
    return request.app.state.predictor


async def service_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


AnyKey = Annotated[ApiKey, Depends(authenticated)]
PredictorKey = Annotated[ApiKey, Depends(require_role("predictor"))]
AuditSubject = Annotated[Subject, Depends(audit_subject)]
RequestId = Annotated[str, Depends(request_id)]
SettingsDep = Annotated[Settings, Depends(app_settings)]
RegistryDep = Annotated[Registry, Depends(model_registry)]
CatalogDep = Annotated[ModelCatalog, Depends(model_catalog)]
PredictorDep = Annotated[Predictor, Depends(predictor)]
MetricsDep = Annotated[ServiceMetrics, Depends(service_metrics)]

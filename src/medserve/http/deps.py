"""Who is calling: bearer API keys, roles, and a per-key rate limit."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from medserve.errors import AuthError, Forbidden, RateLimited
from medserve.security.api_keys import ApiKey, ApiKeyStore

bearer = HTTPBearer(auto_error=False, description="An API key: `medserve keys create`.")


class RateLimiter:
    """Fixed one-minute windows per key; 0 requests per minute means no limit."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.time()
        window = int(now // 60)
        with self._lock:
            start, count = self._windows.get(key_id, (window, 0))
            if start != window:
                start, count = window, 0
            if count >= self.per_minute:
                retry_after = max(1, math.ceil((window + 1) * 60 - now))
                raise RateLimited(
                    f"rate limit of {self.per_minute} requests per minute reached for this "
                    f"key; retry in {retry_after} s",
                    retry_after,
                )
            self._windows[key_id] = (start, count + 1)


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey:
    """The calling key, or 401. Records the key on the request for the audit trail."""
    if credentials is None or not credentials.credentials:
        raise AuthError("missing credential: send 'Authorization: Bearer <API key>'")
    keys: ApiKeyStore = request.app.state.keys
    key = keys.authenticate(credentials.credentials)
    if key is None:
        raise AuthError("the API key is not valid or has been revoked")
    request.state.api_key = key
    request.app.state.rate_limiter.check(key.id)
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


AnyKey = Annotated[ApiKey, Depends(authenticated)]
Predictor = Annotated[ApiKey, Depends(require_role("predictor"))]

"""Dashboard sessions: an API key, given once at sign-in, becomes a random session token
in an HttpOnly, SameSite=Strict cookie. The database keeps only the token's sha256, the
key's id, the session's CSRF token and when it ends, so a stolen database opens no
session.

A session is honoured only while it has not expired, has not been closed (sign-out
deletes it), and its key is still active: a revoked key's sessions end with it, on every
replica (each request reads the key's row, as API keys are). The CSRF token is random
per session and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select
from sqlalchemy import exc as sa_exc

from medserve.errors import ConfigError, RegistryError
from medserve.security.api_keys import ApiKey, ApiKeyStore
from medserve.storage.database import one_line
from medserve.storage.tables import UiSessionRow

TOKEN_BYTES = 32
# The longest a session token or CSRF token may be (anything longer is not ours).
MAX_TOKEN_CHARS = 64


@dataclass(frozen=True)
class UiSession:
    key: ApiKey
    csrf: str
    expires_at: datetime

    def csrf_matches(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UiSessions:
    """Open, resolve and close dashboard sessions of ``ttl_s`` seconds."""

    def __init__(self, engine: Engine, keys: ApiKeyStore, ttl_s: float) -> None:
        self._engine = engine
        self._keys = keys
        self._ttl = timedelta(seconds=ttl_s)

    def open(self, key: ApiKey) -> tuple[str, UiSession]:
        """A new session for ``key``: its token (for the cookie, shown nowhere else)."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = datetime.now(UTC)
        session = UiSession(key, secrets.token_urlsafe(TOKEN_BYTES), now + self._ttl)
        row = {
            "token_hash": _hash(token),
            "key_id": key.id,
            "csrf": session.csrf,
            "created_at": now,
            "expires_at": session.expires_at,
        }
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    delete(UiSessionRow).where(UiSessionRow.expires_at < now)
                )  # ended sessions go as new ones come
                connection.execute(UiSessionRow.__table__.insert(), [row])
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not open the session: {one_line(error)}") from None
        return token, session

    def resolve(self, token: str | None) -> UiSession | None:
        """The live session of ``token``; None when there is none, it ended, or its key
        was revoked."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        statement = select(UiSessionRow.key_id, UiSessionRow.csrf, UiSessionRow.expires_at).where(
            UiSessionRow.token_hash == _hash(token)
        )
        try:
            with self._engine.connect() as connection:
                row = connection.execute(statement).one_or_none()
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not read the session: {one_line(error)}") from None
        if row is None or row.expires_at <= datetime.now(UTC):
            return None
        try:
            key = self._keys.get(row.key_id)
        except ConfigError:  # the key was deleted
            return None
        if not key.active:
            return None
        return UiSession(key, row.csrf, row.expires_at)

    def close(self, token: str | None) -> None:
        """End the session of ``token`` (sign-out); nothing when there is none."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    delete(UiSessionRow).where(UiSessionRow.token_hash == _hash(token))
                )
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not close the session: {one_line(error)}") from None

"""API keys: random tokens shown once, stored only as hashes, each with one role.

A token reads ``ms_<id>_<secret>``: ``id`` is 12 hex characters, public, the
primary key of its row; ``secret`` is ``secrets.token_urlsafe(32)`` (256 random
bits, 43 characters). The database keeps only the SHA-256 of the whole token.
A fast unsalted hash is right here: the token is random with 256 bits of
entropy, so there is nothing to brute-force, and authentication stays one
primary-key lookup and one hash per request.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import Engine, bindparam, func, insert, select, update

from medserve.errors import ConfigError
from medserve.storage.tables import ApiKeyRow

# ``outcomes`` sends observed outcomes for earlier predictions, and may not predict.
Role = Literal["predictor", "trainer", "auditor", "admin", "outcomes"]
ROLES: tuple[Role, ...] = get_args(Role)

TOKEN_PREFIX = "ms"
ID_BYTES = 6  # 12 hex characters
SECRET_BYTES = 32  # 43 url-safe base64 characters
TOKEN_PATTERN = re.compile(r"ms_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
TOKEN_LENGTH = len("ms_") + 2 * ID_BYTES + 1 + 43
MAX_NAME_LENGTH = 255

_TABLE = ApiKeyRow.__table__
_COLUMNS = (_TABLE.c.id, _TABLE.c.name, _TABLE.c.role, _TABLE.c.created_at, _TABLE.c.revoked_at)
# Built once: authentication runs on every request, and building the query was most of its cost.
_AUTHENTICATE = select(*_COLUMNS, _TABLE.c.secret_hash).where(_TABLE.c.id == bindparam("key_id"))


@dataclass(frozen=True)
class ApiKey:
    """What may be shown about a key: never its token or the token's hash."""

    id: str
    name: str | None
    role: Role
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy, timestamps as ISO 8601."""
        fields = dataclasses.asdict(self)
        fields["created_at"] = self.created_at.isoformat()
        fields["revoked_at"] = self.revoked_at.isoformat() if self.revoked_at else None
        return fields


class ApiKeyStore:
    """Creates, authenticates, lists and revokes API keys in the registry database.

    Holds no state of its own, so replicas sharing a database see a revocation
    on their next request. Safe to share between threads.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, role: str, name: str | None = None) -> tuple[ApiKey, str]:
        """A new key and its token. The token is returned here once and never stored."""
        checked_role = check_role(role)
        if name is not None and len(name) > MAX_NAME_LENGTH:
            raise ConfigError(f"a key name has at most {MAX_NAME_LENGTH} characters")
        key_id = secrets.token_hex(ID_BYTES)
        token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
        key = ApiKey(id=key_id, name=name, role=checked_role, created_at=_now(), revoked_at=None)
        with self._engine.begin() as connection:
            connection.execute(
                insert(ApiKeyRow).values(
                    id=key.id,
                    name=key.name,
                    role=key.role,
                    secret_hash=token_hash(token),
                    created_at=key.created_at,
                    revoked_at=None,
                )
            )
        return key, token

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key ``token`` belongs to, or None (malformed, unknown, wrong or revoked)."""
        if not isinstance(token, str) or len(token) != TOKEN_LENGTH:
            return None
        match = TOKEN_PATTERN.fullmatch(token)
        if match is None:
            return None
        # One statement needs no transaction; autocommit saves PostgreSQL its BEGIN and ROLLBACK.
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            row = connection.execute(_AUTHENTICATE, {"key_id": match.group(1)}).one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(str(row.secret_hash).encode(), token_hash(token).encode()):
            return None
        return _key(row)

    def list(self) -> builtins.list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(*_COLUMNS).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
            ).all()
        return [_key(row) for row in rows]

    def get(self, key_id: str) -> ApiKey:
        with self._engine.connect() as connection:
            row = connection.execute(select(*_COLUMNS).where(ApiKeyRow.id == key_id)).one_or_none()
        if row is None:
            raise _unknown(key_id)
        return _key(row)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key: it fails authentication from now on. A second revoke changes nothing."""
        with self._engine.begin() as connection:
            connection.execute(
                update(ApiKeyRow)
                .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
            row = connection.execute(select(*_COLUMNS).where(ApiKeyRow.id == key_id)).one_or_none()
        if row is None:
            raise _unknown(key_id)
        return _key(row)

    def count_active(self) -> int:
        with self._engine.connect() as connection:
            count = connection.execute(
                select(func.count()).select_from(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None))
            ).scalar_one()
        return int(count)


def check_role(role: str) -> Role:
    """``role`` when it is one of ROLES, else a ConfigError naming them."""
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]  # narrowed by the membership test


def token_hash(token: str) -> str:
    """The SHA-256 (hex) stored in place of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        role=row.role,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _unknown(key_id: str) -> ConfigError:
    return ConfigError(f"no API key with id {key_id!r}; `medserve keys list` shows them")


def _now() -> datetime:
    return datetime.now(UTC)

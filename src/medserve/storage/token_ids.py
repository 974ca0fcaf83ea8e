"""The EHR token ids (``jti``) already seen, kept in the shared database until each token
expires, so that a token replayed to any replica is refused (CDS Hooks: "jti ... used to
protect against replay attacks").

The table's primary key (issuer, jti) makes the check atomic on SQLite and PostgreSQL
alike: of two calls racing with the same token, exactly one inserts its row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, update
from sqlalchemy import exc as sa_exc

from medserve.errors import RegistryError
from medserve.storage.database import one_line
from medserve.storage.tables import EhrTokenIdRow

logger = logging.getLogger("medserve.storage")

# Expired rows are deleted at most this often (seconds) or after this many new rows,
# whichever comes first; each purge is one indexed DELETE on expires_at.
PURGE_INTERVAL_S = 60.0
PURGE_EVERY = 1_000

_TABLE = EhrTokenIdRow.__table__


class TokenIds:
    """The replay guard for EHR tokens. Safe to share between threads; every call runs its
    own short transaction, and nothing is cached in the process, so replicas on one
    database agree."""

    def __init__(
        self,
        engine: Engine,
        *,
        now: Callable[[], datetime] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._now = now or (lambda: datetime.now(UTC))
        self._clock = clock
        self._lock = threading.Lock()
        self._inserted_since_purge = 0
        self._last_purge: float | None = None

    def first_use(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Record that ``issuer``'s token ``jti`` is used, and keep it until ``expires_at``
        (timezone-aware; callers add their clock skew to the token's ``exp``). True the
        first time; False while a row for the pair is kept and not expired: a replay.

        Fails with RegistryError (one line) when the database cannot be written: callers
        fail closed and refuse the call."""
        now = self._now()
        try:
            fresh = self._insert(issuer, jti, expires_at)
            if not fresh:
                # Kept already: only a stored token id that has expired may be taken over
                # (a compare-and-swap, so two racing callers cannot both take it).
                fresh = self._take_over_expired(issuer, jti, expires_at, now)
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(
                f"the replay guard (ehr_token_ids) could not be written: {one_line(error)}; "
                "the call is refused until the database is back"
            ) from error
        if fresh:
            self._maybe_purge(now)
        return fresh

    def purge(self, now: datetime | None = None) -> int:
        """Delete the token ids that have expired by ``now`` (default: the current time);
        how many were deleted. RegistryError when the database cannot be written."""
        cutoff = now or self._now()
        try:
            with self._engine.begin() as connection:
                result = connection.execute(delete(_TABLE).where(_TABLE.c.expires_at < cutoff))
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(
                f"expired token ids could not be deleted: {one_line(error)}"
            ) from error
        with self._lock:
            self._inserted_since_purge = 0
            self._last_purge = self._clock()
        return int(result.rowcount or 0)

    def _insert(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    insert(_TABLE).values(issuer=issuer, jti=jti, expires_at=expires_at)
                )
        except sa_exc.IntegrityError:
            return False
        return True

    def _take_over_expired(
        self, issuer: str, jti: str, expires_at: datetime, now: datetime
    ) -> bool:
        with self._engine.begin() as connection:
            result = connection.execute(
                update(_TABLE)
                .where(
                    _TABLE.c.issuer == issuer,
                    _TABLE.c.jti == jti,
                    _TABLE.c.expires_at <= now,
                )
                .values(expires_at=expires_at)
            )
        if result.rowcount == 1:
            return True
        # Either kept and not expired (a replay), or purged in between: then one insert
        # more decides, again atomically.
        return self._insert(issuer, jti, expires_at)

    def _maybe_purge(self, now: datetime) -> None:
        with self._lock:
            self._inserted_since_purge += 1
            due = (
                self._last_purge is None
                or self._inserted_since_purge >= PURGE_EVERY
                or self._clock() - self._last_purge >= PURGE_INTERVAL_S
            )
            if due:
                # Claimed before the DELETE runs, so concurrent callers do not all purge.
                self._inserted_since_purge = 0
                self._last_purge = self._clock()
        if not due:
            return
        try:
            self.purge(now)
        except RegistryError as error:
            # Housekeeping only: the token was recorded; the next purge catches up.
            logger.warning("purging expired EHR token ids failed: %s", error.message)

"""The audit trail: one append-only record per request, hash-chained and keyed with an HMAC.

Each record holds only *who, when, what*: the time, the API key id and role,
the route and method, the model name and version, how many records were
scored, the HTTP status, the request id and the calling client's address.
A request id the client chose is stored as its keyed hash (``request_id_for``),
never as sent.
Never feature values, predictions, free text or patient identifiers: the
trail is read by auditors who must not see PHI, so ``AuditEntry`` has no field
that could carry them.

Tamper evidence:

- ``hash`` is the SHA-256 of a canonical JSON of the record's fields, its
  ``seq`` and the previous record's hash (``prev_hash``); editing a field or
  moving a record to another ``seq`` breaks its hash, removing one breaks the
  chain.
- ``mac`` is an HMAC-SHA256 of ``hash`` under a secret audit key, so a forger
  with write access to the database cannot recompute a consistent chain.
- ``audit_head`` (one row) holds the newest ``seq`` and hash, MACed, and is
  written in the same transaction as the records, so removing records at the
  end is detected too. Putting back an old head row with the tail cut, or
  restoring the audit tables from a backup, cannot be seen from inside the
  database: a ``Checkpoint`` (``medserve audit checkpoint -o FILE``, seq + head
  hash + time, MACed) kept outside it anchors the chain, and
  ``verify_checkpoint`` (``medserve audit verify --checkpoint FILE``) finds the
  rollback.

Values are made storable when an ``AuditEntry`` is built (integers outside the
database's INTEGER range become None, text is cut to its column), so one odd
request can never make a batch fail; if a batch fails all the same, the writer
writes its entries in halves so only the entry that cannot be stored is lost.

Appends take the ``audit`` write lock (``lock_for_write``), so processes and
replicas sharing one PostgreSQL database extend a single consistent chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import operator
import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import OperationalError

from medserve.errors import ConfigError, IntegrityError, RegistryError
from medserve.storage.database import lock_for_write, one_line
from medserve.storage.tables import HEAD_ID, AuditHeadRow, AuditRecordRow

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
LOCK_KEY = "audit"
MIN_KEY_BYTES = 16
# The fields a record's hash covers, besides the chain link itself.
HASHED_FIELDS = (
    "seq",
    "at",
    "key_id",
    "role",
    "route",
    "method",
    "model",
    "model_version",
    "n_records",
    "status",
    "request_id",
    "client",
    "prev_hash",
)
# Hashed only when set: records written before they existed keep their hashes.
OPTIONAL_HASHED_FIELDS = ("patient", "issuer")
# Longest value each text column holds; longer values are cut before hashing.
TEXT_LIMITS = {
    "key_id": 16,
    "role": 16,
    "route": 512,
    "method": 16,
    "model": 64,
    "request_id": 64,
    "client": 255,
    "patient": 64,
    "issuer": 255,
}
READ_BATCH = 1000
HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
# The integer columns are 32-bit (PostgreSQL INTEGER): a larger value cannot be stored.
INT_MAX = 2**31 - 1


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """What one request leaves in the trail. Deliberately no room for feature values or PHI."""

    route: str
    method: str
    status: int
    request_id: str
    key_id: str | None = None
    role: str | None = None
    model: str | None = None
    model_version: int | None = None
    n_records: int | None = None
    client: str | None = None
    # The keyed pseudonym of the patient a FHIR or CDS Hooks call was about (never the id).
    patient: str | None = None
    # The EHR that signed the token of a CDS Hooks call.
    issuer: str | None = None
    at: datetime = field(default_factory=_now)

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("AuditEntry.at must be timezone-aware")
        if not 100 <= int(self.status) <= 599:
            raise ValueError(f"AuditEntry.status must be an HTTP status, not {self.status}")
        # Values from the request (a URL's version, a model name) are made storable here,
        # so that no request can make the batch its record is written in fail.
        for name in ("model_version", "n_records"):
            object.__setattr__(self, name, _storable_int(getattr(self, name)))
        for name, limit in TEXT_LIMITS.items():
            object.__setattr__(self, name, _storable_text(getattr(self, name), limit))


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking the whole chain.

    ``checked`` counts the records that verified before the first problem;
    ``first_broken_seq`` is the first record that cannot be vouched for (None
    when the records are fine but the head row is missing or altered).
    """

    ok: bool
    checked: int
    first_broken_seq: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Checkpoint:
    """The chain's newest record at ``at``: its ``seq`` and ``hash``, MACed with the audit key
    (HMAC-SHA256 of ``audit_checkpoint:{seq}:{hash}:{at}``), kept outside the database."""

    seq: int
    hash: str
    at: str
    mac: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        """From ``to_dict``'s JSON; ConfigError when it is not one."""
        try:
            fields = {name: data[name] for name in ("seq", "hash", "at", "mac")}
            seq, digests = fields["seq"], (fields["hash"], fields["mac"])
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
                raise TypeError
            if not isinstance(fields["at"], str) or not all(
                isinstance(digest, str) and HEX_DIGEST.fullmatch(digest) for digest in digests
            ):
                raise TypeError
        except (KeyError, TypeError):
            raise ConfigError(
                "not an audit checkpoint: expected a JSON object with seq, hash, at and mac "
                "(as `medserve audit checkpoint` writes)"
            ) from None
        return cls(**fields)


class AuditLog:
    """Appends to, verifies and exports the audit trail in the registry database.

    ``hmac_key`` is the audit purpose key (at least 16 bytes); every replica
    writing to the same database must use the same one. Safe to share between
    threads; every call runs its own transaction.
    """

    def __init__(self, engine: Engine, hmac_key: bytes) -> None:
        if not isinstance(hmac_key, bytes) or len(hmac_key) < MIN_KEY_BYTES:
            raise ConfigError(f"the audit HMAC key must be at least {MIN_KEY_BYTES} bytes")
        self._engine = engine
        self._key = hmac_key

    def append(self, entry: AuditEntry) -> int:
        """Chain and store one entry; returns its seq."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Iterable[AuditEntry]) -> list[int]:
        """Chain and store entries in order, in one transaction; returns their seqs.

        Refuses (IntegrityError) to extend a chain whose head is missing or fails
        its MAC: appending would hide the damage.
        """
        batch = list(entries)
        if not batch:
            return []
        with self._engine.begin() as connection:
            lock_for_write(connection, LOCK_KEY)
            last_seq, prev_hash = self._head_for_append(connection)
            rows = []
            for entry in batch:
                last_seq += 1
                row = record_fields(entry, last_seq, prev_hash)
                row["hash"] = record_hash(row)
                row["mac"] = self._mac(row["hash"])
                rows.append(row)
                prev_hash = row["hash"]
            connection.execute(insert(AuditRecordRow), rows)
            head = {"seq": last_seq, "hash": prev_hash, "mac": self._head_mac(last_seq, prev_hash)}
            if rows[0]["seq"] == 1:
                connection.execute(insert(AuditHeadRow).values(id=HEAD_ID, **head))
            else:
                connection.execute(
                    update(AuditHeadRow).where(AuditHeadRow.id == HEAD_ID).values(**head)
                )
        return [row["seq"] for row in rows]

    def verify(self) -> VerifyResult:
        """Recompute every hash, link and MAC in seq order, then check the head."""
        with _snapshot(self._engine) as connection:
            head = connection.execute(
                select(AuditHeadRow.seq, AuditHeadRow.hash, AuditHeadRow.mac).where(
                    AuditHeadRow.id == HEAD_ID
                )
            ).one_or_none()
            records = connection.execution_options(yield_per=READ_BATCH).execute(
                select(AuditRecordRow.__table__).order_by(AuditRecordRow.seq)
            )
            checked, prev_hash = 0, GENESIS_HASH
            for record in records:
                expected_seq = checked + 1
                problem = self._record_problem(record._mapping, expected_seq, prev_hash)
                if problem is not None:
                    return VerifyResult(False, checked, expected_seq, problem)
                checked, prev_hash = expected_seq, record.hash
        return self._check_head(head, checked, prev_hash)

    def head_problem(self) -> str | None:
        """Why the chain cannot be extended (head missing, failing its MAC, or records after
        it), or None: two small queries, cheap enough for a readiness check."""
        with _snapshot(self._engine) as connection:
            try:
                last_seq, _ = self._head_for_append(connection)
            except IntegrityError as error:
                return error.message
            newest = connection.execute(select(func.max(AuditRecordRow.seq))).scalar_one()
        if (newest or 0) != last_seq:
            return f"the audit head names record {last_seq} but the newest record is {newest}"
        return None

    def checkpoint(self, at: datetime | None = None) -> Checkpoint:
        """A MACed note of the chain's newest record, to keep outside the database.

        Refuses (IntegrityError) to vouch for a chain that does not verify."""
        result = self.verify()
        if not result.ok:
            where = f" at record {result.first_broken_seq}" if result.first_broken_seq else ""
            raise IntegrityError(
                f"the audit trail is broken{where} ({result.reason}): no checkpoint written; "
                "run `medserve audit verify`"
            )
        with _snapshot(self._engine) as connection:
            # Read again, so checked again: the head's MAC (a head written since the verify
            # is vouched for only if the audit key made it) and the record it names.
            seq, head_hash = self._head_for_append(connection)
            named = connection.execute(
                select(AuditRecordRow.hash).where(AuditRecordRow.seq == seq)
            ).scalar_one_or_none()
        if seq and named != head_hash:
            raise IntegrityError(
                f"the audit head names record {seq}, whose hash differs: no checkpoint written"
            )
        moment = _iso(at or _now())
        return Checkpoint(seq, head_hash, moment, self._checkpoint_mac(seq, head_hash, moment))

    def verify_checkpoint(self, checkpoint: Checkpoint) -> VerifyResult:
        """``verify``, then: the chain still holds the checkpoint's record, with its hash.

        Finds what no check inside the database can: the tail cut with an old head put
        back, or the audit tables rolled back to a backup taken before the checkpoint."""
        expected = self._checkpoint_mac(checkpoint.seq, checkpoint.hash, checkpoint.at)
        if not _same(checkpoint.mac, expected):
            raise IntegrityError(
                "the checkpoint fails its MAC check (the file was altered, or was written "
                "with another audit key)"
            )
        result = self.verify()
        if not result.ok or checkpoint.seq == 0:
            return result
        with _snapshot(self._engine) as connection:
            stored = connection.execute(
                select(AuditRecordRow.hash).where(AuditRecordRow.seq == checkpoint.seq)
            ).scalar_one_or_none()
        if stored is None:
            return VerifyResult(
                False,
                result.checked,
                result.checked + 1,
                f"truncated or rolled back: the checkpoint of {checkpoint.at} vouches for "
                f"{checkpoint.seq} records, the database holds {result.checked}",
            )
        if stored != checkpoint.hash:
            return VerifyResult(
                False,
                checkpoint.seq - 1,
                checkpoint.seq,
                f"rolled back or rewritten: record {checkpoint.seq} is not the one the "
                f"checkpoint of {checkpoint.at} vouches for",
            )
        return result

    def export(self, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """The stored records (hashes and MACs included) in seq order; see ``export_records``."""
        return export_records(self._engine, since)

    def _head_for_append(self, connection: Connection) -> tuple[int, str]:
        head = connection.execute(
            select(AuditHeadRow.seq, AuditHeadRow.hash, AuditHeadRow.mac).where(
                AuditHeadRow.id == HEAD_ID
            )
        ).one_or_none()
        if head is None:
            if connection.execute(select(AuditRecordRow.seq).limit(1)).first() is not None:
                raise IntegrityError(
                    "the audit head is missing but the audit log has records: nothing was "
                    "appended; run `medserve audit verify`"
                )
            return 0, GENESIS_HASH
        if not _same(head.mac, self._head_mac(head.seq, head.hash)):
            raise IntegrityError(
                "the audit head fails its MAC check (altered, or this service uses another "
                "audit key): nothing was appended; run `medserve audit verify`"
            )
        return head.seq, head.hash

    def _record_problem(
        self, record: Mapping[Any, Any], expected_seq: int, prev_hash: str
    ) -> str | None:
        if record["seq"] != expected_seq:
            missing = (
                f"record {expected_seq} is"
                if record["seq"] == expected_seq + 1
                else f"records {expected_seq}–{record['seq'] - 1} are"
            )
            return f"{missing} missing (the next one is {record['seq']})"
        if record_hash(record) != record["hash"]:
            return "its contents do not match its hash (a field or its position was changed)"
        if record["prev_hash"] != prev_hash:
            previous = f"record {expected_seq - 1}" if expected_seq > 1 else "the start"
            return f"its prev_hash does not link to {previous} (records reordered or replaced)"
        if not _same(record["mac"], self._mac(record["hash"])):
            return "its MAC does not match (altered, or written with another audit key)"
        return None

    def _check_head(self, head: Any, last_seq: int, last_hash: str) -> VerifyResult:
        if head is None:
            if last_seq == 0:
                return VerifyResult(True, 0)
            return VerifyResult(
                False, last_seq, None, "the audit head is missing (records at the end may be gone)"
            )
        if not _same(head.mac, self._head_mac(head.seq, head.hash)):
            return VerifyResult(
                False, last_seq, None, "the audit head's MAC does not match (the head was altered)"
            )
        if head.seq > last_seq:
            missing = (
                f"record {head.seq} is"
                if head.seq == last_seq + 1
                else f"records {last_seq + 1}–{head.seq} are"
            )
            return VerifyResult(
                False, last_seq, last_seq + 1, f"{missing} missing at the end of the log"
            )
        if head.seq < last_seq:
            return VerifyResult(
                False,
                head.seq,
                head.seq + 1,
                f"record {head.seq + 1} comes after the audit head (seq {head.seq})",
            )
        if head.hash != last_hash:
            return VerifyResult(
                False, last_seq - 1, last_seq, "it does not match the audit head's hash"
            )
        return VerifyResult(True, last_seq)

    def request_id_for(self, client_request_id: str) -> str:
        """What the trail (and the access log) holds for a request id the client chose:
        ``c-`` and 32 hex digits of its HMAC under the audit key. Clients put anything
        there, MRNs included; the same id always maps to the same value, so whoever holds
        the audit key can still find a client's request (``medserve audit request-id``)."""
        message = f"request_id:{client_request_id}".encode()
        return "c-" + hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def _mac(self, record_hash_hex: str) -> str:
        return hmac.new(self._key, record_hash_hex.encode("ascii"), hashlib.sha256).hexdigest()

    def _head_mac(self, seq: int, head_hash: str) -> str:
        message = f"audit_head:{seq}:{head_hash}".encode("ascii")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _checkpoint_mac(self, seq: int, head_hash: str, at: str) -> str:
        message = f"audit_checkpoint:{seq}:{head_hash}:{at}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def _same(stored: object, expected: str) -> bool:
    """A timing-safe comparison that a tampered value (not text, not ASCII) cannot crash."""
    return hmac.compare_digest(str(stored).encode(), expected.encode())


def _storable_int(value: int | None) -> int | None:
    """``value`` if a 32-bit INTEGER column holds it, else None (the record says "unknown")."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = operator.index(value)  # numpy integers too; never a float or a string
    except TypeError:
        return None
    return number if 0 <= number <= INT_MAX else None


def _storable_text(value: str | None, limit: int) -> str | None:
    """``value`` cut to its column, without NUL (PostgreSQL refuses it) or lone surrogates."""
    if value is None:
        return None
    text_value = str(value)[:limit]
    if not text_value.isascii():
        text_value = text_value.encode("utf-8", "replace").decode("utf-8")
    return text_value.replace("\x00", "\ufffd")


def record_fields(entry: AuditEntry, seq: int, prev_hash: str) -> dict[str, Any]:
    """The stored fields of ``entry`` as record ``seq``: text cut to its column, numbers as int."""
    fields: dict[str, Any] = {
        "seq": seq,
        "at": entry.at.astimezone(UTC),
        "prev_hash": prev_hash,
        "status": int(entry.status),
        "model_version": None if entry.model_version is None else int(entry.model_version),
        "n_records": None if entry.n_records is None else int(entry.n_records),
    }
    for name, limit in TEXT_LIMITS.items():
        value = getattr(entry, name)
        fields[name] = None if value is None else str(value)[:limit]
    return fields


def record_hash(record: Mapping[Any, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a record's hashed fields."""
    canonical = {name: record[name] for name in HASHED_FIELDS}
    for name in OPTIONAL_HASHED_FIELDS:
        if record.get(name) is not None:
            canonical[name] = record[name]
    canonical["at"] = _iso(record["at"])
    payload = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def export_records(engine: Engine, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Stored audit records as JSON-ready dicts in seq order, those at or after ``since`` only.

    Needs no audit key: exporting copies, it does not vouch for them.
    """
    if since is not None and since.tzinfo is None:
        raise ConfigError("the export start time must include a time zone (e.g. 'Z' or '+00:00')")
    statement = select(AuditRecordRow.__table__).order_by(AuditRecordRow.seq)
    if since is not None:
        statement = statement.where(AuditRecordRow.at >= since)
    with engine.connect() as connection:
        for row in connection.execution_options(yield_per=READ_BATCH).execute(statement):
            record = dict(row._mapping)
            record["at"] = _iso(record["at"])
            yield record


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only connection that sees one consistent state of the database.

    PostgreSQL: a REPEATABLE READ transaction. SQLite (pysqlite issues no BEGIN
    before reads): an explicit deferred BEGIN, whose snapshot starts at the first read.
    """
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execution_options(isolation_level="REPEATABLE READ")
        elif connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN")
        try:
            yield connection
        finally:
            connection.rollback()


_STOP = object()


def _unreachable(error: Exception) -> bool:
    """Whether a failed append is down to the database: it cannot be reached (RegistryError
    once it has answered, storage/database.py) or locked. It will pass once the database
    is back."""
    return isinstance(error, (RegistryError, OperationalError))


def _may_be_one_entry(error: Exception) -> bool:
    """Whether a failed append may be down to one of its entries (a value the database
    refuses), so that writing the batch in parts can save the others. Not for a head that
    fails its check or a database that cannot be reached or locked: every part would fail."""
    return not (isinstance(error, IntegrityError) or _unreachable(error))


class AuditWriter:
    """Writes audit entries from a background thread, in batches (group commit).

    ``submit`` only enqueues and returns a future that resolves to the entry's seq once
    its batch has committed, or fails with RegistryError if it could not be written: a
    caller that must not answer before the record is durable awaits it. The thread
    writes batches of up to ``max_batch`` entries, waiting at most ``flush_interval_s``
    to fill one (by default not at all: what queued while the last batch committed is
    the next batch, so requests wait for one commit, not for a timer). A failing batch
    is retried with back-off, for at most ``RETRY_BUDGET_S``; if it still fails it is
    written in halves, down to single entries, so only an entry that cannot be stored is
    lost. Losses are logged at once (one line), make ``failure`` say why, and make the next
    ``flush`` raise RegistryError.

    A failure ends when a later write succeeds. While failed, the writer tries each batch
    once (requests are refused meanwhile, and their refusals should not wait out a
    back-off). When the database could not be reached, the writer also checks, every
    ``RECOVERY_PROBE_S`` while idle, whether it answers again and the chain can be
    extended (``AuditLog.head_problem``), and ends the failure if so: a service that gets
    no traffic during an outage (a load balancer took it out of rotation on its /readyz)
    is ready again without a restart. Ending it only lets requests in: each still waits
    for its own record, so none is answered unaudited. (A head that fails its check is
    not probed for: it is repaired by hand, and the next write after that ends it.)
    ``close`` writes everything submitted before it and logs, never raises, what was lost.
    """

    RETRY_DELAYS_S = (0.1, 0.2, 0.4, 0.8)
    # Retrying stops once this long has passed since a batch's first try: against a
    # server that does not answer at all, each try can take the connect timeout.
    RETRY_BUDGET_S = 2.0
    RECOVERY_PROBE_S = 0.5

    def __init__(self, log: AuditLog, flush_interval_s: float = 0.0, max_batch: int = 500) -> None:
        if max_batch < 1:
            raise ConfigError("max_batch must be at least 1")
        self._log = log
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._state = threading.Condition()
        self._submitted = 0
        self._finished = 0  # written or lost
        self._lost = 0
        self._lost_reported = 0
        self._last_error: str | None = None
        self._failure: str | None = None
        self._database_down = False  # the failure is the database's: probe for its return
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="medserve-audit-writer", daemon=True)
        self._thread.start()

    @property
    def log(self) -> AuditLog:
        """The audit log this writer appends to."""
        return self._log

    @property
    def lost(self) -> int:
        """Entries that could not be written, since the writer started."""
        with self._state:
            return self._lost

    @property
    def failure(self) -> str | None:
        """Why the last write lost records (None once a later one succeeds, or once the
        database answers again after an outage), or that the writer is closed: while it
        is set, audited requests are refused."""
        with self._state:
            if self._closed:
                return "the audit writer is closed"
            return self._failure

    def submit(self, entry: AuditEntry) -> Future[int]:
        """Queue ``entry`` for writing; never blocks on the database. The future resolves
        to its seq once written, or fails with RegistryError."""
        written: Future[int] = Future()
        written.set_running_or_notify_cancel()  # cannot be cancelled: it is always written
        with self._state:
            if self._closed:
                raise RuntimeError("the audit writer is closed")
            self._submitted += 1
            self._queue.put((entry, written))
        return written

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until everything submitted so far is written (or lost: then RegistryError)."""
        with self._state:
            target = self._submitted
            if not self._state.wait_for(lambda: self._finished >= target, timeout_s):
                raise RegistryError(
                    f"the audit writer did not finish within {timeout_s} s "
                    f"({target - self._finished} records pending)"
                )
            self._raise_if_lost()

    def close(self, timeout_s: float | None = None) -> None:
        """Stop accepting entries, write all queued ones, stop the thread. Idempotent.

        Runs at shutdown: losses were reported as they happened, so it logs one line
        about them (and about a thread that did not finish) rather than raising."""
        with self._state:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.error("the audit writer did not finish within %s s", timeout_s)
            return
        with self._state:
            if self._lost > self._lost_reported:
                logger.error(
                    "%d audit records could not be written since the service started: %s",
                    self._lost,
                    self._last_error,
                )
                self._lost_reported = self._lost

    def __enter__(self) -> AuditWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raise_if_lost(self) -> None:
        if self._lost > self._lost_reported:
            newly_lost = self._lost - self._lost_reported
            self._lost_reported = self._lost
            raise RegistryError(
                f"{newly_lost} audit records could not be written: {self._last_error}"
            )

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._next()
            if first is _STOP:
                break
            batch = [first]
            deadline = time.monotonic() + self._flush_interval_s
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)
        # submit() refuses entries once _STOP is queued, so nothing is left behind it.

    def _next(self) -> Any:
        """The next queued item; while failed and idle, probing for recovery meanwhile."""
        while True:
            with self._state:
                probing = self._failure is not None and self._database_down
            if not probing:
                return self._queue.get()
            try:
                return self._queue.get(timeout=self.RECOVERY_PROBE_S)
            except queue.Empty:
                self._probe()

    def _probe(self) -> None:
        """End the failure if the database answers and the chain can be extended."""
        try:
            problem = self._log.head_problem()
        # Any failure only means "not yet": the next probe tries again.
        except Exception:  # noqa: BLE001
            return
        if problem is not None:
            return  # the head is missing or altered: that failure stays until it is repaired
        with self._state:
            self._failure, self._database_down = None, False
        logger.warning("the audit database answers again: audited requests are served")

    def _write(self, batch: list[tuple[AuditEntry, Future[int]]]) -> None:
        written: list[tuple[Future[int], int]] = []
        lost: list[tuple[Future[int], Exception]] = []
        with self._state:
            failed = self._failure is not None
        error = self._append(batch, () if failed else self.RETRY_DELAYS_S, written)
        if error is None:
            pass
        elif len(batch) == 1 or not _may_be_one_entry(error):
            lost = [(future, error) for _, future in batch]
        else:
            # Retried and still failing: one entry may be unstorable. Halve down to single
            # entries, each tried once, so that it costs no other entry its record.
            lost = self._bisect(batch, written)
        # The state first, then the futures: whoever a future wakes sees ``failure`` as
        # this write left it.
        with self._state:
            if lost:
                self._lost += len(lost)
                self._last_error = one_line(lost[-1][1])
                self._failure = (
                    f"{len(lost)} audit records could not be written: {self._last_error}"
                )
                self._database_down = _unreachable(lost[-1][1])
                logger.error("could not write %d audit records: %s", len(lost), self._last_error)
            else:
                self._failure, self._database_down = None, False
            self._finished += len(batch)
            self._state.notify_all()
        for future, seq in written:
            future.set_result(seq)
        for future, failure in lost:
            future.set_exception(
                RegistryError(f"the audit record could not be written: {one_line(failure)}")
            )

    def _bisect(
        self, batch: list[tuple[AuditEntry, Future[int]]], written: list[tuple[Future[int], int]]
    ) -> list[tuple[Future[int], Exception]]:
        lost: list[tuple[Future[int], Exception]] = []
        pending = [batch]
        while pending:
            part = pending.pop()
            error = self._append(part, (), written)
            if error is None:
                continue
            if len(part) == 1:
                lost.append((part[0][1], error))
            else:
                half = len(part) // 2
                pending.extend((part[half:], part[:half]))  # the first half is written first
        return lost

    def _append(
        self,
        batch: list[tuple[AuditEntry, Future[int]]],
        retry_delays_s: Iterable[float],
        written: list[tuple[Future[int], int]],
    ) -> Exception | None:
        """Write ``batch``, retrying after each delay; adds its (future, seq) pairs to
        ``written``, or returns the error of the last try when it never succeeded."""
        error: Exception | None = None
        give_up_at = time.monotonic() + self.RETRY_BUDGET_S
        for delay_s in (*retry_delays_s, None):
            try:
                seqs = self._log.append_many(entry for entry, _ in batch)
            # The thread must outlive any failure, or flush() and close() would wait
            # forever; the error is logged and reported through the futures and flush().
            except Exception as failure:  # noqa: BLE001
                error = failure
                if delay_s is None or time.monotonic() + delay_s > give_up_at:
                    break
                time.sleep(delay_s)
                continue
            written.extend(zip((future for _, future in batch), seqs, strict=True))
            return None
        return error

"""Per-request bookkeeping in one ASGI middleware: request id, body-size limit, Prometheus
metrics, the audit record and a structured log line. None of it sees a feature value.

Which requests leave an audit record is decided by the route, never by the URL: a route
that touches a model or patient data declares an ``AuditSubject`` (http/deps.py), and
every request it receives leaves exactly one record, refusals (403, 404, 405, 413, 422,
429 of a known key) included. A request that matches no route at all (404, a slash
redirect) is audited too, as route "(unmatched)": the service cannot tell what it was
meant to reach, so it keeps the trace. Only the routes that declare nothing (the health
checks) leave no record.

Refusals before authentication are counted, not audited: a request whose key is not
known (a 401, a 429 by address, a 400 for two credentials) leaves no record of its own,
as it names nobody and would let anyone fill the trail, but counts in
``medserve_refused_requests_total{reason}`` (the reason http/admission.py leaves in
``scope[PREAUTH_REFUSAL]``). No key, no record. Every request made with a valid key is
audited, 403, 404 and 413 included.

The record is durable before the answer leaves (fail closed): for an audited request the
middleware holds back ``http.response.start``, submits the record to the AuditWriter,
awaits its commit (the writer still commits many requests' records in one transaction),
and only then lets the response go. If the record cannot be written the client gets a
503 problem+json instead of the answer. While the writer's last write failed (or the
writer is closed), http/admission.py refuses requests with a valid key with 503 before
they run; each such refusal is itself audited, and the first whose record is written
again ends the outage.

A client's own X-Request-ID is echoed in the response (header and body) for its own
correlation, but the trail and the access log hold only its keyed hash (``c-`` + 32 hex,
``AuditLog.request_id_for``; `medserve audit request-id ID` computes it): clients that
send an MRN there put no PHI in the trail. Ids made here (uuid4) are kept as they are.

Prometheus labels stay bounded: the route label is the route template, and the model
label names a model only when the catalog serves it ("other" for any other name a URL
brings, "" for none)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.exceptions import HTTPException

from medserve.errors import RegistryError
from medserve.http.problems import for_path, problem
from medserve.security.api_keys import ApiKey
from medserve.security.audit import AuditEntry, AuditWriter

log = logging.getLogger("medserve.access")
REQUEST_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
# The audit route of a request that reached no route.
UNMATCHED = "(unmatched)"
# Where a request's RequestRecord lives in its ASGI scope (read through http/deps.py).
SCOPE_KEY = "medserve.request"
# Why a request was refused before its key was known, as http/admission.py notes it:
# counted in medserve_refused_requests_total{reason}, never audited one by one.
PREAUTH_REFUSAL = "medserve.preauth_refusal"
# Where http/admission.py leaves the key it admitted (http/deps.py ADMITTED_KEY; named here
# too because deps.py imports this module).
ADMITTED_KEY = "medserve.admitted_key"
# Why a request without a known key was refused, when http/admission.py did not say.
NO_KEY_REASONS = {401: "unauthenticated", 429: "rate_limited", 413: "too_large"}
# The model label of a model name the catalog does not serve (URLs can name anything).
OTHER_MODEL = "other"
AUDIT_UNAVAILABLE = (
    "the audit trail cannot be written, so this request was refused (nothing that touches "
    "a model or patient data is answered unaudited); see /readyz and the server log"
)


@dataclass(slots=True)
class AuditSubject:
    """What an audited request touched, as its route fills it in: model name, version and
    how many records it scored. Deliberately no room for feature values or identifiers."""

    model: str | None = None
    model_version: int | None = None
    n_records: int | None = None
    # FHIR and CDS Hooks: the patient's keyed pseudonym (never the id); the token's issuer.
    patient: str | None = None
    issuer: str | None = None


@dataclass(slots=True)
class RequestRecord:
    """One request as this middleware accounts for it; routes add the calling key and the
    audit subject only through the dependencies in http/deps.py.

    ``request_id`` is the id the client sees (its own X-Request-ID, echoed, or one made
    here); ``logged_id`` is what the audit trail and the access log hold: the same when
    made here, the keyed hash of a client's own (it may be an MRN)."""

    request_id: str
    logged_id: str = ""
    key: ApiKey | None = None
    subject: AuditSubject = field(default_factory=AuditSubject)


# The audit trail's role for a call made with an EHR's verified token (CDS Hooks).
EHR_ROLE = "ehr"


def request_record(scope: dict[str, Any]) -> RequestRecord:
    return scope[SCOPE_KEY]


class AuditedRoutes(Protocol):
    """Which routes declared an audit subject (see http/audited.py)."""

    def declared(self, route: object) -> bool: ...


class ServiceMetrics:
    """Prometheus series for one app (its own registry, so tests can build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "medserve_requests_total",
            "HTTP requests by route template, method, status and model name.",
            ["route", "method", "status", "model"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "medserve_request_latency_seconds",
            "Request latency by route template and model name.",
            ["route", "model"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=self.registry,
        )
        self.records = Counter(
            "medserve_scored_records_total",
            "Records scored, by model name and version.",
            ["model", "version"],
            registry=self.registry,
        )
        self.batch_records = Histogram(
            "medserve_batch_records",
            "Records scored together in one batched call (dynamic batching), by model name.",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024),
            registry=self.registry,
        )
        self.refused = Counter(
            "medserve_refused_requests_total",
            "Requests refused before authentication (counted here, not audited one by one).",
            ["reason"],
            registry=self.registry,
        )
        self.drift_psi = Gauge(
            "medserve_drift_psi",
            "PSI of each feature (and of the predicted risk, feature '(risk)') in the "
            "current window against the version's reference profile.",
            ["model", "version", "feature"],
            registry=self.registry,
        )
        self.drift_missing_shift = Gauge(
            "medserve_drift_missing_shift",
            "Change in each feature's share missing in the current window (window - reference).",
            ["model", "version", "feature"],
            registry=self.registry,
        )
        self.drift_alerts = Gauge(
            "medserve_drift_alerts",
            "Drift alerts raised in the current window (0 when quiet or suppressed).",
            ["model", "version"],
            registry=self.registry,
        )
        self.shadow_latency = Histogram(
            "medserve_shadow_scoring_seconds",
            "Time the shadow version took per answer (off the response path), by model name.",
            ["model"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0),
            registry=self.registry,
        )
        self.predictions_unlogged = Gauge(
            "medserve_predictions_unlogged",
            "Predictions answered but not in the prediction log (queue full or write failed).",
            registry=self.registry,
        )

    def drift(self, model: str, version: int, drift: dict[str, Any]) -> None:
        """The gauges for ``model`` version ``version``'s current window."""
        labels = (model, str(version))
        self.drift_alerts.labels(*labels).set(len(drift.get("alerts", [])))
        if drift.get("suppressed", True):
            return
        for feature, measured in drift.get("features", {}).items():
            if measured.get("psi") is not None:
                self.drift_psi.labels(*labels, feature).set(measured["psi"])
            shift = (measured.get("missing") or {}).get("shift")
            if shift is not None:
                self.drift_missing_shift.labels(*labels, feature).set(shift)
        risk_psi = (drift.get("risk") or {}).get("psi")
        if risk_psi is not None:
            self.drift_psi.labels(*labels, "(risk)").set(risk_psi)


def _request_ids(headers: list[tuple[bytes, bytes]], writer: AuditWriter | None) -> tuple[str, str]:
    """(the id the client sees, the id the trail and the log hold)."""
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")[:64]
            if text and set(text) <= REQUEST_ID_CHARS:
                return text, _pseudonym(text, writer)
    made = uuid.uuid4().hex
    return made, made


def _pseudonym(client_request_id: str, writer: AuditWriter | None) -> str:
    if writer is not None:
        return writer.log.request_id_for(client_request_id)
    digest = hashlib.sha256(_PROCESS_SALT + client_request_id.encode()).hexdigest()
    return "c-" + digest[:32]


# Without an audit trail, client ids in the log are hashed with a salt of this process.
_PROCESS_SALT = secrets.token_bytes(16)


@dataclass(slots=True)
class _Exchange:
    """How one request's answer went, as the middleware follows it."""

    status: int = 500
    started: bool = False
    replaced: bool = False
    pending: AuditEntry | None = None  # submitted after the answer (durable_audit=False)


class RequestBookkeeping:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path).

    ``durable_audit=False`` submits the record after the answer instead (the behaviour
    before it became durable; kept for bench/audit_durability.py to measure the cost)."""

    def __init__(
        self,
        app: Callable,
        *,
        metrics: ServiceMetrics,
        audit: Callable[[], AuditWriter | None],
        audited: AuditedRoutes,
        max_body_bytes: int,
        durable_audit: bool = True,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.audit = audit
        self.audited = audited
        self.max_body_bytes = max_body_bytes
        self.durable_audit = durable_audit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = scope.get("headers", [])
        writer = self.audit()
        request_id, logged_id = _request_ids(headers, writer)
        record = RequestRecord(request_id, logged_id)
        scope[SCOPE_KEY] = record
        exchange = _Exchange()
        header_id = (b"x-request-id", record.request_id.encode())

        async def send_plain(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header_id]
            await send(message)

        async def send_with_id(message: dict) -> None:
            if exchange.replaced:
                return  # the answer was refused: drop the rest of it
            if message["type"] == "http.response.start":
                exchange.status, exchange.started = message["status"], True
                if not await self._audit_before_answer(scope, record, exchange, writer):
                    exchange.replaced, exchange.status = True, 503
                    refusal = for_path(scope["path"], audit_unavailable())
                    await refusal(scope, receive, send_plain)
                    return
            await send_plain(message)

        # A body declared over the limit is refused by http/admission.py (it knows the key
        # by then); here, one that grows over the limit as it streams in.
        limit = self.max_body_bytes
        try:
            received = 0

            async def limited_receive() -> dict:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        # HTTPException passes through FastAPI's body parsing untouched.
                        raise HTTPException(
                            413,
                            f"request body is over the limit of {limit} bytes; "
                            "send fewer records per request",
                        )
                return message

            await self.app(scope, limited_receive, send_with_id)
        except Exception:
            if not exchange.started:
                # Starlette's outermost handler answers 500 once this re-raises: the record
                # of the request goes first, as for any other answer.
                await self._audit_before_answer(scope, record, exchange, writer)
            raise
        finally:
            if exchange.pending is not None and writer is not None:
                self._submit_after_answer(writer, exchange.pending)
            self._account(scope, record, exchange.status, time.perf_counter() - started)

    async def _audit_before_answer(
        self, scope: dict, record: RequestRecord, exchange: _Exchange, writer: AuditWriter | None
    ) -> bool:
        """Write the request's record, if it leaves one; False when it could not be written."""
        if writer is None:
            return True
        entry = self._entry(scope, record, exchange.status)
        if entry is None:
            return True
        if not self.durable_audit:
            exchange.pending = entry
            return True
        try:
            await asyncio.wrap_future(writer.submit(entry))
        except (RegistryError, RuntimeError) as error:
            log.error(
                "audit record not written, request refused",
                extra={"fields": {"route": entry.route, "why": str(error)}},
            )
            return False
        return True

    def _submit_after_answer(self, writer: AuditWriter, entry: AuditEntry) -> None:
        try:
            writer.submit(entry)
        except RuntimeError as error:
            log.error("audit record not written", extra={"fields": {"why": str(error)}})

    def _entry(self, scope: dict, record: RequestRecord, status: int) -> AuditEntry | None:
        """The request's audit entry, or None for the routes that declare none and for the
        refusals before authentication (counted instead)."""
        route = scope.get("route")
        if route is not None and not self.audited.declared(route):
            return None
        # A key the admission middleware admitted counts even when the request was refused
        # before a dependency recorded it (a record count over the limit).
        key = record.key or scope.get(ADMITTED_KEY)
        # An EHR's CDS Hooks call has no key: its verified token's issuer names it.
        if key is None and record.subject.issuer is None:
            # refused before its key (or token) was known: counted, never a record
            reason = scope.get(PREAUTH_REFUSAL) or NO_KEY_REASONS.get(status, "no_key")
            self.metrics.refused.labels(reason).inc()
            return None
        subject, client = record.subject, scope.get("client")
        # A name from a URL is kept when it named a model: answered, or one served. Any
        # other string a client put there (an MRN, say) stays out of the trail.
        known = status < 400 or _model_label(scope, subject.model) == subject.model
        return AuditEntry(
            route=getattr(route, "path", None) or UNMATCHED,
            method=scope["method"],
            status=status,
            request_id=record.logged_id,
            key_id=key.id if key else None,
            role=key.role if key else EHR_ROLE,
            model=subject.model if known else None,
            model_version=subject.model_version if known else None,
            n_records=subject.n_records,
            client=client[0] if client else None,
            patient=subject.patient,
            issuer=subject.issuer,
        )

    def _account(self, scope: dict, record: RequestRecord, status: int, elapsed_s: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED
        subject, key = record.subject, record.key
        model = _model_label(scope, subject.model)
        self.metrics.requests.labels(template, scope["method"], str(status), model).inc()
        self.metrics.latency.labels(template, model).observe(elapsed_s)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "request",
                extra={
                    "fields": {
                        "request_id": record.logged_id,
                        "method": scope["method"],
                        "route": template,
                        "status": status,
                        "latency_ms": round(elapsed_s * 1000, 3),
                        "key_id": key.id if key else None,
                        "model": model or None,
                        "n_records": subject.n_records,
                    }
                },
            )


def audit_unavailable() -> Any:
    """The 503 for a request refused because its audit record cannot be written."""
    return problem(503, AUDIT_UNAVAILABLE, kind="audit-unavailable", headers={"Retry-After": "1"})


def _model_label(scope: dict, model: str | None) -> str:
    """``model`` if the app's catalog serves a version of it, else "other" ("" for none)."""
    if not model:
        return ""
    catalog = getattr(getattr(scope.get("app"), "state", None), "catalog", None)
    if catalog is None:
        return OTHER_MODEL
    return model if catalog.serves(model) else OTHER_MODEL

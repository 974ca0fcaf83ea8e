"""Per-request bookkeeping in one ASGI middleware: request id, body-size limit, Prometheus
metrics, the audit record and a structured log line. None of it sees a feature value.

Which requests leave an audit record is decided by the route, never by the URL: a route
that touches a model or patient data declares an ``AuditSubject`` (http/deps.py), and
every request it receives leaves exactly one record, refusals (401, 403, 413, 422, 429)
included. A request that matches no route at all (404, a slash redirect) is audited too,
as route "(unmatched)": the service cannot tell what it was meant to reach, so it keeps
the trace. Only the routes that declare nothing (the health checks) leave no record."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.exceptions import HTTPException

from medserve.security.api_keys import ApiKey
from medserve.security.audit import AuditEntry, AuditWriter

log = logging.getLogger("medserve.access")
REQUEST_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
# The audit route of a request that reached no route.
UNMATCHED = "(unmatched)"
# Where a request's RequestRecord lives in its ASGI scope (read through http/deps.py).
SCOPE_KEY = "medserve.request"


@dataclass(slots=True)
class AuditSubject:
    """What an audited request touched, as its route fills it in: model name, version and
    how many records it scored. Deliberately no room for feature values or identifiers."""

    model: str | None = None
    model_version: int | None = None
    n_records: int | None = None


@dataclass(slots=True)
class RequestRecord:
    """One request as this middleware accounts for it; routes add the calling key and the
    audit subject only through the dependencies in http/deps.py."""

    request_id: str
    key: ApiKey | None = None
    subject: AuditSubject = field(default_factory=AuditSubject)


def request_record(scope: dict[str, Any]) -> RequestRecord:
    return scope[SCOPE_KEY]


class AuditedRoutes(Protocol):
    """Which routes declared an audit subject (see http/audited.py)."""

    def declared(self, route: object) -> bool: ...

    def route_of(self, scope: dict[str, Any]) -> object | None: ...


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


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")[:64]
            if text and set(text) <= REQUEST_ID_CHARS:
                return text
    return uuid.uuid4().hex


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestBookkeeping:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path)."""

    def __init__(
        self,
        app: Callable,
        *,
        metrics: ServiceMetrics,
        audit: Callable[[], AuditWriter | None],
        audited: AuditedRoutes,
        max_body_bytes: int,
        too_large: Callable[[str], Any],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.audit = audit
        self.audited = audited
        self.max_body_bytes = max_body_bytes
        self.too_large = too_large

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = scope.get("headers", [])
        record = RequestRecord(_request_id(headers))
        scope[SCOPE_KEY] = record
        status = 500
        header_id = (b"x-request-id", record.request_id.encode())

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header_id]
            await send(message)

        limit = self.max_body_bytes
        declared = _content_length(headers)
        try:
            if declared is not None and declared > limit:
                # Refused before routing: name the route it was sent to all the same.
                route = self.audited.route_of(scope)
                if route is not None:
                    scope["route"] = route
                response = self.too_large(
                    f"request body of {declared} bytes is over the limit of {limit} bytes; "
                    "send fewer records per request"
                )
                await response(scope, receive, send_with_id)
                return
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
        finally:
            self._account(scope, record, status, time.perf_counter() - started)

    def _account(self, scope: dict, record: RequestRecord, status: int, elapsed_s: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED
        subject, key = record.subject, record.key
        model = subject.model or ""
        self.metrics.requests.labels(template, scope["method"], str(status), model).inc()
        self.metrics.latency.labels(template, model).observe(elapsed_s)
        if route is None or self.audited.declared(route):
            self._audit(scope, record, template, status)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "request",
                extra={
                    "fields": {
                        "request_id": record.request_id,
                        "method": scope["method"],
                        "route": template,
                        "status": status,
                        "latency_ms": round(elapsed_s * 1000, 3),
                        "key_id": key.id if key else None,
                        "model": subject.model,
                        "n_records": subject.n_records,
                    }
                },
            )

    def _audit(self, scope: dict, record: RequestRecord, template: str, status: int) -> None:
        writer = self.audit()
        if writer is None:
            return
        subject, key, client = record.subject, record.key, scope.get("client")
        writer.submit(
            AuditEntry(
                route=template,
                method=scope["method"],
                status=status,
                request_id=record.request_id,
                key_id=key.id if key else None,
                role=key.role if key else None,
                model=subject.model,
                model_version=subject.model_version,
                n_records=subject.n_records,
                client=client[0] if client else None,
            )
        )

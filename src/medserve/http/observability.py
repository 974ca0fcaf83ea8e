"""Per-request bookkeeping in one ASGI middleware: request id, body-size limit, Prometheus
metrics, the audit record and a structured log line. None of it sees a feature value."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.exceptions import HTTPException

from medserve.security.audit import AuditEntry, AuditWriter

log = logging.getLogger("medserve.access")
# Routes whose requests touch a model or patient data: each leaves one audit record.
AUDITED_PREFIX = "/v1/"
REQUEST_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


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
        max_body_bytes: int,
        too_large: Callable[[str], Any],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.audit = audit
        self.max_body_bytes = max_body_bytes
        self.too_large = too_large

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = scope.get("headers", [])
        request_id = _request_id(headers)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        header_id = (b"x-request-id", request_id.encode())

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
            self._account(scope, state, status, request_id, time.perf_counter() - started)

    def _account(
        self, scope: dict, state: dict, status: int, request_id: str, elapsed_s: float
    ) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "(unmatched)"
        model = state.get("model_name") or ""
        self.metrics.requests.labels(template, scope["method"], str(status), model).inc()
        self.metrics.latency.labels(template, model).observe(elapsed_s)
        key = state.get("api_key")
        client = scope.get("client")
        if template.startswith(AUDITED_PREFIX) or scope["path"].startswith(AUDITED_PREFIX):
            writer = self.audit()
            if writer is not None:
                writer.submit(
                    AuditEntry(
                        route=template,
                        method=scope["method"],
                        status=status,
                        request_id=request_id,
                        key_id=key.id if key else None,
                        role=key.role if key else None,
                        model=model or None,
                        model_version=state.get("model_version"),
                        n_records=state.get("n_records"),
                        client=client[0] if client else None,
                    )
                )
        if log.isEnabledFor(logging.INFO):
            log.info(
                "request",
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": scope["method"],
                        "route": template,
                        "status": status,
                        "latency_ms": round(elapsed_s * 1000, 3),
                        "key_id": key.id if key else None,
                        "model": model or None,
                        "n_records": state.get("n_records"),
                    }
                },
            )

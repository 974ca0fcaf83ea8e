"""RFC 9457 problem+json responses: every error a client can get, said so it can act."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from medserve.errors import AuthError, MedserveError, RateLimited
from medserve.scoring.predictor import InvalidRecords

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://medserve.dev/problems/"
log = logging.getLogger("medserve.http")

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": PROBLEM_BASE + (kind or _TITLES.get(status, "error").lower().replace(" ", "-")),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


async def _medserve_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, MedserveError)
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if isinstance(error, AuthError):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, InvalidRecords):
        extra["errors"] = [asdict(problem) for problem in error.problems]
    if error.http_status >= 500:
        log.error("request failed", extra={"fields": {"error": type(error).__name__}})
    return problem(
        error.http_status,
        error.message,
        kind=type(error).__name__.lower(),
        headers=headers,
        **extra,
    )


def _location(loc: tuple[Any, ...]) -> dict[str, Any]:
    """('body', 'records', 3, 'age') → record 3, field 'age'."""
    parts = [p for p in loc if p != "body"]
    where: dict[str, Any] = {"field": ".".join(str(p) for p in parts) or "body"}
    if len(parts) >= 2 and parts[0] == "records" and isinstance(parts[1], int):
        where = {"record": parts[1], "field": ".".join(str(p) for p in parts[2:]) or "record"}
    return where


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [
        {
            **_location(tuple(e.get("loc", ()))),
            "rule": e.get("type", "invalid"),
            "message": e["msg"],
        }
        for e in error.errors()[:100]
    ]
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    detail = f"{first['field']}: {first['message']}"
    return problem(422, detail, kind="invalid-request", errors=errors)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    detail = error.detail if isinstance(error.detail, str) else "request refused"
    if error.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.url.path}; see /docs for the API"
    return problem(error.status_code, detail, headers=dict(error.headers or {}))


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error", extra={"fields": {"error": type(error).__name__}})
    return problem(500, "the server hit an unexpected error; it has been logged")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MedserveError, _medserve_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

"""RFC 9457 problem+json responses: every error a client can get, said so it can act.

A MedserveError's problem carries two extension members beside the standard ones: its
stable ``code`` (e.g. ``invalid_option``) and, when it has one, its ``location`` (which
option, file, column and row, or record and field)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from medserve.errors import (
    AuthError,
    DataError,
    DuplicateOutcome,
    ExplanationUnavailable,
    Forbidden,
    IntegrityError,
    MedserveError,
    ModelNotFound,
    ModelUnavailable,
    PayloadTooLarge,
    PredictionNotFound,
    PrefetchUnavailable,
    RateLimited,
    RegistryError,
    ResourceNotFound,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from medserve.interop.fhir.outcome import issue_code_for, operation_outcome
from medserve.scoring.predictor import InvalidRecords

PROBLEM_MEDIA_TYPE = "application/problem+json"
FHIR_MEDIA_TYPE = "application/fhir+json"
# Under the FHIR routes (routes/fhir.py) every refusal is a FHIR OperationOutcome.
FHIR_PATH = re.compile(r"^/v1/models/[^/]+/fhir(/|$)")
# Headers a refusal carries that its OperationOutcome keeps.
_KEPT_HEADERS = ("www-authenticate", "retry-after", "accept-post", "connection", "allow")
PROBLEM_BASE = "https://medserve.dev/problems/"
log = logging.getLogger("medserve.http")
# Where a client learns the API: the OpenAPI document (behind a credential, as every
# route but the health checks is; see routes/metadata.py).
API_DOCUMENT = "/openapi.json"

# The status of each kind of error; a subclass not listed takes its nearest listed
# base's (SchemaError is a DataError: 422; a ConfigError is a bad request: 400).
HTTP_STATUSES: dict[type, int] = {
    MedserveError: 400,
    DataError: 422,
    ModelNotFound: 404,
    ExplanationUnavailable: 409,
    PayloadTooLarge: 413,
    RateLimited: 429,
    AuthError: 401,
    Forbidden: 403,
    IntegrityError: 500,
    RegistryError: 503,
    ModelUnavailable: 503,
    PrefetchUnavailable: 412,
    ResourceNotFound: 404,
    PredictionNotFound: 404,
    DuplicateOutcome: 409,
    UpstreamUnavailable: 502,
    UpstreamTimeout: 504,
}

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
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


def fhir_path(path: str) -> bool:
    """True for a path of the FHIR API, routed or not (its errors are OperationOutcomes)."""
    return FHIR_PATH.match(path) is not None


def as_operation_outcome(response: Response) -> JSONResponse:
    """A problem+json refusal said as a FHIR OperationOutcome: same status, same message,
    the headers a client acts on kept."""
    try:
        detail = json.loads(bytes(response.body)).get("detail") or "request refused"
    except (ValueError, AttributeError):
        detail = "request refused"
    status = response.status_code
    headers = {
        name: value for name, value in response.headers.items() if name.lower() in _KEPT_HEADERS
    }
    return JSONResponse(
        operation_outcome(str(detail), code=issue_code_for(status)),
        status_code=status,
        media_type=FHIR_MEDIA_TYPE,
        headers=headers,
    )


def for_path(path: str, response: JSONResponse) -> JSONResponse:
    """``response``, as an OperationOutcome under the FHIR routes."""
    return as_operation_outcome(response) if fhir_path(path) else response


def http_status(error: MedserveError | type[MedserveError]) -> int:
    """The HTTP status a client gets for ``error`` (an error or its class)."""
    kind = error if isinstance(error, type) else type(error)
    return next(HTTP_STATUSES[base] for base in kind.__mro__ if base in HTTP_STATUSES)


def error_problem(error: MedserveError) -> JSONResponse:
    """The problem+json response for ``error``: its status, its message (options named
    neutrally), its ``code`` and ``location``, and the headers its kind needs."""
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {"code": error.code}
    if error.location is not None:
        extra["location"] = error.location.to_dict()
    if isinstance(error, AuthError):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, InvalidRecords):
        extra["errors"] = [asdict(problem) for problem in error.problems]
    return problem(
        http_status(error),
        error.message,
        kind=type(error).__name__.lower(),
        headers=headers,
        **extra,
    )


async def _medserve_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, MedserveError)
    if http_status(error) >= 500:
        log.error("request failed", extra={"fields": {"error": type(error).__name__}})
    return for_path(request.url.path, error_problem(error))


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
    answer = problem(422, detail, kind="invalid-request", errors=errors)
    return for_path(request.url.path, answer)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    detail = error.detail if isinstance(error.detail, str) else "request refused"
    if error.status_code == 404 and detail == "Not Found":
        detail = (
            f"no route {request.url.path}; the API is described at {API_DOCUMENT} "
            "(send your API key)"
        )
    answer = problem(error.status_code, detail, headers=dict(error.headers or {}))
    return for_path(request.url.path, answer)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, MedserveError):
        # Raised by a middleware (outside the routes' handlers), it reaches only this
        # outermost one: it still gets its own status (a database outage is a 503).
        return await _medserve_error(request, error)
    log.exception("unexpected error", extra={"fields": {"error": type(error).__name__}})
    answer = problem(500, "the server hit an unexpected error; it has been logged")
    return for_path(request.url.path, answer)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MedserveError, _medserve_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

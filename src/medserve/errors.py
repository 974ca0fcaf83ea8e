"""The medserve exception tree. Every error carries a message written for the user.

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``;
the HTTP app turns the same errors into RFC 9457 problem+json.
"""

from __future__ import annotations


class MedserveError(Exception):
    """Base class: a problem the user can act on."""

    exit_code = 1
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DataError(MedserveError):
    """The input data cannot be read or does not fit what was asked."""

    exit_code = 2
    http_status = 422


class SchemaError(DataError):
    """A record does not match the model's schema (type, category, range)."""


class ConfigError(MedserveError):
    """A command-line option, setting or schema file is invalid."""

    exit_code = 2


class ModelNotFound(MedserveError):
    """No model (or no such version) in the registry."""

    exit_code = 3
    http_status = 404


class IntegrityError(MedserveError):
    """A stored artifact or record failed its integrity check."""

    exit_code = 4
    http_status = 500


class RegistryError(MedserveError):
    """The registry cannot be opened or written."""

    exit_code = 5
    http_status = 503


class AuthError(MedserveError):
    """A missing, wrong or revoked credential."""

    exit_code = 6
    http_status = 401


class Forbidden(MedserveError):
    """A valid credential whose role may not do this."""

    exit_code = 6
    http_status = 403


class RateLimited(MedserveError):
    """Too many requests for one API key in the current window."""

    http_status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PayloadTooLarge(MedserveError):
    """A request body or record count over the configured maximum."""

    http_status = 413


class ModelUnavailable(MedserveError):
    """A registered model that cannot be loaded right now (e.g. failed its integrity check)."""

    http_status = 503


class ExplanationUnavailable(MedserveError):
    """The model cannot be explained as stored (e.g. trained before explanations existed)."""

    exit_code = 2
    http_status = 409

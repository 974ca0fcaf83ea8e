"""The medserve exception tree. Every error carries a message written for the user, a
stable ``code`` and, where it has one, a structured ``location`` (which option, column, row,
record, field or file).

Errors know nothing of their channel. Options are named with ``option("positive_if")``
inside the message; each channel renders them its own way: the CLI as ``--positive-if``
(see ``MedserveError.render``), HTTP and library callers as ``the 'positive_if' option``.
``str(error)`` and ``error.message`` are the neutral form.

What went wrong is all an error says: the CLI maps error classes to exit codes
(``medserve.cli._common``) and the HTTP app maps them to status codes
(``medserve.http.problems``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

# An option named inside a message: NUL-delimited, so no text a user or a file supplies
# can look like one.
_OPTION = re.compile("\x00option:([a-z_][a-z0-9_]*)\x00")


def option(name: str) -> str:
    """A marker for the option ``name`` (its Python name) inside an error message."""
    return f"\x00option:{name}\x00"


def neutral_option(name: str) -> str:
    """An option as HTTP and library callers read it: ``the 'positive_if' option``."""
    return f"the '{name}' option"


@dataclass(frozen=True)
class Location:
    """Where a problem is: any of an option, a file, a column and row of a table, or a
    record and field of a request."""

    option: str | None = None
    file: str | None = None
    column: str | None = None
    row: int | None = None
    record: int | None = None
    field: str | None = None

    def to_dict(self) -> dict[str, str | int]:
        return {name: value for name, value in asdict(self).items() if value is not None}


class MedserveError(Exception):
    """Base class: a problem the user can act on."""

    default_code = "error"

    def __init__(
        self, message: str, *, code: str | None = None, location: Location | None = None
    ) -> None:
        self.template = message
        self.message = self.render(neutral_option)
        super().__init__(self.message)
        self.code = code or self.default_code
        # The first option named is the one to change, unless the raiser said otherwise.
        options = _OPTION.findall(message)
        if options and location is None:
            location = Location(option=options[0])
        elif options and location is not None and location.option is None:
            location = replace(location, option=options[0])
        self.location = location

    def render(self, name_option: Callable[[str], str]) -> str:
        """The message with each option named as ``name_option`` says (e.g. ``--target``)."""
        return _OPTION.sub(lambda match: name_option(match.group(1)), self.template)


class DataError(MedserveError):
    """The input data cannot be read or does not fit what was asked."""

    default_code = "invalid_data"


class SchemaError(DataError):
    """A record does not match the model's schema (type, category, range)."""

    default_code = "invalid_record"


class ConfigError(MedserveError):
    """An option, a setting or a schema file is invalid."""

    default_code = "invalid_option"


class ModelNotFound(MedserveError):
    """No model (or no such version) in the registry."""

    default_code = "model_not_found"


class IntegrityError(MedserveError):
    """A stored artifact or record failed its integrity check."""

    default_code = "integrity_failure"


class RegistryError(MedserveError):
    """The registry cannot be opened or written."""

    default_code = "registry_unavailable"


class AuthError(MedserveError):
    """A missing, wrong or revoked credential."""

    default_code = "unauthenticated"


class Forbidden(MedserveError):
    """A valid credential whose role may not do this."""

    default_code = "forbidden"


class RateLimited(MedserveError):
    """Too many requests for one API key in the current window."""

    default_code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PayloadTooLarge(MedserveError):
    """A request body or record count over the configured maximum."""

    default_code = "payload_too_large"


class ModelUnavailable(MedserveError):
    """A registered model that cannot be loaded right now (e.g. failed its integrity check)."""

    default_code = "model_unavailable"


class ExplanationUnavailable(MedserveError):
    """The model cannot be explained as stored (e.g. trained before explanations existed)."""

    default_code = "explanation_unavailable"


class FhirError(DataError):
    """A FHIR resource or Bundle that cannot be read as the binding needs it: malformed,
    the wrong resourceType, no subject, a unit that cannot be converted."""

    default_code = "invalid_fhir"


class UpstreamUnavailable(MedserveError):
    """A server medserve must call (the FHIR server, an EHR's key set) did not answer
    usably: refused, unreachable, or an error status."""

    default_code = "upstream_unavailable"


class UpstreamTimeout(UpstreamUnavailable):
    """A server medserve must call did not answer in time."""

    default_code = "upstream_timeout"


class PrefetchUnavailable(MedserveError):
    """A CDS Hooks call that carries neither the prefetch the service needs nor a FHIR
    server (with authorization) to fetch it from (CDS Hooks: 412)."""

    default_code = "prefetch_unavailable"


class ResourceNotFound(MedserveError):
    """A FHIR resource the request names (a Patient) that the FHIR server does not have."""

    default_code = "resource_not_found"


class PredictionNotFound(MedserveError):
    """Feedback naming a prediction this service never logged for the model."""

    default_code = "prediction_not_found"


class DuplicateOutcome(MedserveError):
    """An outcome for a prediction that has one already: the first report stands."""

    default_code = "duplicate_outcome"

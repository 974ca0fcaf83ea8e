"""The CDS Hooks service call: the body an EHR POSTs to ``{base}/cds-services/{id}``, read
and checked, and the patient's resources taken from its prefetch.

``parse_hook_request`` turns the body into a ``HookRequest`` or raises a DataError (422)
naming the field that is wrong. ``prefetched_resources`` answers the FHIR resources the
prefetch carries when it satisfies every template of the service, else None: the caller
then fetches them from ``fhirServer`` with ``fhirAuthorization`` (``can_fetch``), or
answers 412 (PrefetchUnavailable) when it can do neither.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from medserve.errors import DataError, Location

if TYPE_CHECKING:
    from medserve.interop.cds_hooks.discovery import ServiceEntry

# A reference to a patient, relative or absolute, with or without a version.
_PATIENT_REFERENCE = re.compile(r"(?:^|/)Patient/([^/]+)(?:/_history/[^/]+)?$")
_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
# Prefetch tokens naming the user (spec: "Prefetch tokens identifying the user"), each the
# id part of ``context.userId`` when it is of that resource type.
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


class FhirAuthorization(BaseModel):
    """The OAuth 2.0 bearer token an EHR lends the service to read its FHIR server. The
    token is a secret: it is left out of the repr (so of logs and tracebacks) and of every
    error message; send it to ``fhirServer`` only."""

    model_config = ConfigDict(extra="allow", frozen=True)

    access_token: str = Field(repr=False)
    token_type: str
    expires_in: int = Field(ge=0)
    scope: str
    subject: str
    patient: str | None = None

    @field_validator("access_token")
    @classmethod
    def _token_given(cls, token: str) -> str:
        if not token.strip():
            raise ValueError("the access token is empty")
        return token

    @field_validator("token_type")
    @classmethod
    def _bearer(cls, token_type: str) -> str:
        # RFC 6749 section 5.1: the token type is case-insensitive.
        if token_type.lower() != "bearer":
            raise ValueError("must be 'Bearer'")
        return token_type


class HookRequest(BaseModel):
    """A CDS Hooks call as the spec defines it; members the spec does not name (an
    ``extension``) are kept. ``prefetch`` values are checked only where a template of the
    service reads them (``prefetched_resources``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    hook: str = Field(min_length=1)
    hookInstance: str
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    @field_validator("hookInstance")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValueError("must be a UUID, e.g. d1577c69-dfbe-44ad-ba6d-3e05e953b2ea") from None
        return value

    @field_validator("fhirServer")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be the FHIR server's absolute base URL (https://...)")
        return value

    @model_validator(mode="after")
    def _server_with_token(self) -> HookRequest:
        if self.fhirAuthorization is not None and self.fhirServer is None:
            raise ValueError("fhirServer is required when fhirAuthorization is given")
        return self

    @property
    def patient_id(self) -> str:
        """The FHIR ``Patient.id`` in context (``parse_hook_request`` ensures one)."""
        return self.context["patientId"]

    @property
    def user_id(self) -> str | None:
        return self.context.get("userId")

    @property
    def encounter_id(self) -> str | None:
        return self.context.get("encounterId")


def describe_validation_error(error: ValidationError, where: str) -> str:
    """The first problem pydantic found, in one line naming the field (``context``,
    ``fhirAuthorization.expires_in``, ``feedback[0].outcome``). The value sent is never
    repeated: it may be a token or a patient detail."""
    first = error.errors(include_input=False, include_url=False)[0]
    place = ""
    for part in first["loc"]:
        place += f"[{part}]" if isinstance(part, int) else f".{part}" if place else str(part)
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "is required"
    if not place:
        return f"{where}: {message}"
    # pydantic's own messages are sentences ("Input should be ..."); ours read on.
    return (
        f"{where}: {place}: {message}" if message[:1].isupper() else f"{where}: {place} {message}"
    )


def parse_hook_request(
    body: object, service: ServiceEntry, *, allow_http_loopback: bool = True
) -> HookRequest:
    """The call ``body`` as a HookRequest for ``service``, or a DataError (422) naming the
    first problem: not a JSON object, a required member missing or mistyped, a hook other
    than the service's, no ``context.patientId``, or a ``fhirServer`` that is not https.

    The spec says production data travel over https only; with ``allow_http_loopback``
    (the default) an ``http`` FHIR server on the loopback interface (``localhost``,
    127.0.0.0/8, ``::1``) is accepted, for development and tests; pass False in a
    deployment that must refuse even that."""
    if not isinstance(body, Mapping):
        raise DataError(
            "the hook request must be a JSON object with hook, hookInstance and context"
        )
    try:
        request = HookRequest.model_validate(body)
    except ValidationError as error:
        raise DataError(describe_validation_error(error, "the hook request")) from None
    if request.hook != service.hook:
        raise DataError(
            f"CDS service '{service.id}' answers the '{service.hook}' hook, not "
            f"'{request.hook[:64]}'; call the service listed for that hook in discovery",
            location=Location(field="hook"),
        )
    patient_id = request.context.get("patientId")
    if not isinstance(patient_id, str) or not patient_id.strip():
        raise DataError(
            f"the hook request: context.patientId is required for '{request.hook}' "
            "(the FHIR id of the patient in context, a string)",
            location=Location(field="context.patientId"),
        )
    for name in ("userId", "encounterId"):
        if name in request.context and not isinstance(request.context[name], str):
            raise DataError(
                f"the hook request: context.{name} must be a string",
                location=Location(field=f"context.{name}"),
            )
    if request.fhirServer is not None:
        _check_https(request.fhirServer, allow_http_loopback)
    return request


def _check_https(url: str, allow_http_loopback: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if allow_http_loopback and _loopback(parts.hostname or ""):
        return
    raise DataError(
        "the hook request: fhirServer must be an https URL (CDS Hooks sends patient data "
        "and the access token over TLS only); plain http is accepted only for a loopback "
        "server, in development and tests",
        location=Location(field="fhirServer"),
    )


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def can_fetch(request: HookRequest) -> bool:
    """Whether the call lets the service read the EHR's FHIR server itself: it gives both
    ``fhirServer`` and ``fhirAuthorization``."""
    return request.fhirServer is not None and request.fhirAuthorization is not None


def prefetched_resources(request: HookRequest, templates: Mapping[str, str]) -> list[dict] | None:
    """The FHIR resources the call's prefetch carries for ``templates`` (the service's
    prefetch keys), or None when the prefetch does not satisfy them all, so that the
    caller fetches from the FHIR server (or answers 412).

    Per key, as the spec defines prefetch: a missing key is a template the EHR did not or
    could not satisfy (None); ``null`` is a satisfied template with no data (no
    resources); a searchset Bundle gives its entries' resources, leaving out the search's
    OperationOutcome warnings; a Bundle with a ``next`` link is one page of several
    (None: the service fetches all pages); an OperationOutcome is an error the EHR met
    (None); any other resource (a read, e.g. ``Patient/123``) is itself. Resources that
    appear under two keys are given once.

    DataError when a value the templates read is not a FHIR resource, or when a resource
    belongs to a patient other than ``context.patientId``: a prefetch that mixes patients
    is never scored."""
    prefetch = request.prefetch
    if prefetch is None:
        return None
    resources: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for key in templates:
        if key not in prefetch:
            return None
        found = _resources(prefetch[key], key)
        if found is None:
            return None
        for resource in found:
            _check_patient(resource, request.patient_id, key)
            identity = (resource["resourceType"], resource.get("id"))
            if isinstance(identity[1], str):
                if identity in seen:
                    continue
                seen.add(identity)
            resources.append(resource)
    return resources


def _resources(value: object, key: str) -> list[dict] | None:
    if value is None:
        return []
    _check_resource(value, f"prefetch.{key}")
    value = cast(dict, value)
    if value["resourceType"] == "OperationOutcome":
        return None
    if value["resourceType"] != "Bundle":
        return [value]
    links = value.get("link") or []
    if isinstance(links, list) and any(
        isinstance(link, Mapping) and link.get("relation") == "next" for link in links
    ):
        return None
    entries = value.get("entry") or []
    if not isinstance(entries, list):
        raise DataError(f"prefetch.{key}: the Bundle's entry must be an array")
    found = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "resource" not in entry:
            continue
        search = entry.get("search")
        if isinstance(search, Mapping) and search.get("mode") == "outcome":
            continue
        resource = entry["resource"]
        _check_resource(resource, f"prefetch.{key}.entry[{i}].resource")
        if resource["resourceType"] != "OperationOutcome":
            found.append(resource)
    return found


def _check_resource(value: object, where: str) -> None:
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise DataError(
            f"{where} must be a FHIR resource (a JSON object with a resourceType) or null"
        )


def _check_patient(resource: dict, patient_id: str, key: str) -> None:
    """DataError when ``resource`` is, or is about, a patient other than ``patient_id``."""
    if resource["resourceType"] == "Patient":
        other = resource.get("id") not in (None, patient_id)
    else:
        other = False
        for name in ("subject", "patient"):
            reference = resource.get(name)
            if isinstance(reference, Mapping) and isinstance(reference.get("reference"), str):
                match = _PATIENT_REFERENCE.search(reference["reference"])
                other = other or (match is not None and match.group(1) != patient_id)
    if other:
        raise DataError(
            f"prefetch.{key} holds a resource of a patient other than the one in context; "
            "the EHR must prefetch for context.patientId only",
            location=Location(field=f"prefetch.{key}"),
        )


def resolve_template(template: str, request: HookRequest) -> str:
    """A prefetch template with its tokens replaced from the call, as the EHR would: the
    relative FHIR URL to GET from ``fhirServer`` when the prefetch lacks it. Values are
    URL-encoded. DataError naming a token the call's context cannot fill."""

    def value(match: re.Match[str]) -> str:
        token = match.group(1)
        name = token.removeprefix("context.")
        if token.startswith("context."):
            found = request.context.get(name)
        elif token in _USER_TOKENS:
            kind, _, ident = str(request.user_id or "").partition("/")
            found = ident if kind == _USER_TOKENS[token] else None
        else:
            found = None
        if not isinstance(found, str | int | float) or isinstance(found, bool) or found == "":
            raise DataError(
                f"prefetch token {{{{{token}}}}} cannot be filled from this call's context",
                location=Location(field=f"context.{name}"),
            )
        return quote(str(found), safe="")

    return _TOKEN.sub(value, template)

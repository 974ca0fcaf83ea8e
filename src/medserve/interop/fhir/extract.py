"""From a patient's FHIR resources to a model's record, with the provenance of each value.

``read_bundle`` takes a Bundle (any type: collection, searchset, transaction, batch) as
parsed JSON; ``read_resources`` a flat list of resources, such as CDS Hooks prefetch or
FHIR searches give (searchset Bundles inside the list are flattened). Both return a
``PatientRecord``: per feature of the binding its value (or None), the resources it came
from, and, when it is missing, why.

Only what the binding reads is parsed: the Patient, and the Observations and Conditions
carrying one of the binding's codes are validated against the FHIR R4 models of
``fhir.resources.R4B``; other resources are only checked for a ``resourceType`` (and, for
Observations and Conditions, for being about the same patient), so a whole Synthea
record does not cost parsing every Claim.

Choices (clinical conventions written down):

- **Observations** count when their status is ``final``, ``amended`` or ``corrected``:
  verified results. ``registered`` has no result yet, ``preliminary`` may still change,
  ``cancelled``, ``entered-in-error`` and ``unknown`` are not results to act on.
- An Observation's time is ``effectiveDateTime`` / ``effectiveInstant``, else
  ``effectivePeriod.end`` (then ``.start``), else ``issued``; one with none of them is
  ignored (its age cannot be told). Observations after the reference time are ignored.
- **Partial dates** ("1970", "1970-05") read as their first day: a partial
  ``birthDate`` gives the earliest possible birthday, so the oldest age the date allows
  (off by under a year at most); a date without a time zone is UTC.
- **Conditions** count unless ``verificationStatus`` is ``refuted`` or
  ``entered-in-error``, or they began (``onset[x]``, else ``recordedDate``) after the
  reference time. Without a lookback, any such Condition is present: a history,
  resolved ones included. With a lookback, the Condition must overlap the window: its
  ``abatement[x]`` (when given) falls in or after the window's start, or, without one, it
  is still ``active``/``recurrence``/``relapse``, or it began within the window.
- **Age** is whole years at the reference time; a deceased patient still has one.
- Errors name the entry by its 1-based position ("entry 3 (Observation): ...") and never
  carry values, names or ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from statistics import fmean
from typing import Any

from medserve.errors import FhirError
from medserve.interop.fhir.binding import (
    AgeSource,
    AnySource,
    Binding,
    ConditionSource,
    ObservationSource,
)
from medserve.interop.fhir.units import convert

UCUM = "http://unitsofmeasure.org"
USABLE_OBSERVATION = ("final", "amended", "corrected")
EXCLUDED_VERIFICATION = ("refuted", "entered-in-error")
ONGOING_CLINICAL = ("active", "recurrence", "relapse")

_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")


@dataclass(frozen=True)
class PatientRecord:
    """A model's record read from one patient's resources, with where each value came from.

    ``patient_id`` is ``Patient.id``: the caller pseudonymises it and never logs it."""

    patient_id: str
    record: dict[str, object]
    sources: dict[str, list[str]]
    missing: dict[str, str]
    reference_time: datetime

    def basis(self) -> list[str]:
        """The references used by any feature, each once, in feature order (Patient first)."""
        patient = f"Patient/{self.patient_id}"
        used = [reference for refs in self.sources.values() for reference in refs]
        ordered = [patient] if patient in used else []
        ordered += [reference for reference in used if reference != patient]
        return list(dict.fromkeys(ordered))


@dataclass(frozen=True)
class _Item:
    """One resource of the input and where it was found."""

    where: str  # "entry 3 (Observation)": for error messages
    kind: str
    resource: dict[str, Any]
    full_url: str | None

    @property
    def reference(self) -> str | None:
        """``Observation/<id>``, else the entry's fullUrl, else None (nothing to point at)."""
        identifier = self.resource.get("id")
        if isinstance(identifier, str) and identifier:
            return f"{self.kind}/{identifier}"
        return self.full_url


def read_bundle(bundle: object, binding: Binding, *, at: datetime | None = None) -> PatientRecord:
    """The record ``binding`` reads from a Bundle holding exactly one Patient and resources
    about them, at the reference time ``at`` (default now, UTC; a naive ``at`` is UTC).

    FhirError, naming the entry, for a Bundle that is not one, no or two Patients, a
    resource about another patient, a malformed resource the binding reads, or a unit
    that cannot be converted."""
    if not isinstance(bundle, dict):
        raise FhirError("the Bundle is not a JSON object; send a FHIR Bundle resource")
    kind = bundle.get("resourceType")
    if kind != "Bundle":
        got = f"resourceType '{kind}'" if isinstance(kind, str) else "no resourceType"
        raise FhirError(f"expected a FHIR Bundle, got {got}")
    items = list(_entries(bundle.get("entry", []), "entry"))
    return _read(items, binding, at=at, patient_id=None, what="the Bundle")


def read_resources(
    resources: Sequence[object],
    binding: Binding,
    *,
    at: datetime | None = None,
    patient_id: str | None = None,
) -> PatientRecord:
    """The record ``binding`` reads from a list of resources (searchset Bundles in it are
    flattened; None items, prefetch keys the EHR could not fill, are skipped).

    Without ``patient_id`` the list must hold exactly one Patient; with it, the Patient
    may be in the list (it must then have that id) or absent (age and gender are then
    missing). Errors as for ``read_bundle``."""
    if isinstance(resources, (str, bytes, dict)) or not isinstance(resources, Sequence):
        raise FhirError("expected a list of FHIR resources")
    items: list[_Item] = []
    for number, resource in enumerate(resources, start=1):
        if resource is None:
            continue
        where = f"resource {number}"
        if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
            items.extend(_entries(resource.get("entry", []), f"{where}, entry"))
        else:
            items.append(_item(resource, where, None))
    return _read(items, binding, at=at, patient_id=patient_id, what="the resources")


def _entries(entries: object, label: str) -> Iterator[_Item]:
    if not isinstance(entries, list):
        raise FhirError(f"Bundle.entry is not a list ({label})")
    for number, entry in enumerate(entries, start=1):
        where = f"{label} {number}"
        if not isinstance(entry, dict):
            raise FhirError(f"{where}: not a JSON object")
        if entry.get("resource") is None:
            continue  # a DELETE request, a response without a body
        full_url = entry.get("fullUrl")
        yield _item(entry["resource"], where, full_url if isinstance(full_url, str) else None)


def _item(resource: object, where: str, full_url: str | None) -> _Item:
    if not isinstance(resource, dict):
        raise FhirError(f"{where}: the resource is not a JSON object")
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or not kind:
        raise FhirError(f"{where}: the resource has no resourceType")
    return _Item(f"{where} ({kind})", kind, resource, full_url)


def _read(
    items: list[_Item],
    binding: Binding,
    *,
    at: datetime | None,
    patient_id: str | None,
    what: str,
) -> PatientRecord:
    reference_time = _reference_time(at)
    patient, patient_id = _the_patient(items, patient_id, what)
    identities = _identities(patient_id, patient)
    read_types = set(binding.resource_types()) - {"Patient"}
    wanted = _wanted_codes(binding)
    by_kind: dict[str, list[_Item]] = {"Observation": [], "Condition": []}
    for item in items:
        if item.kind not in read_types:
            continue
        _check_subject(item, patient_id, identities)
        codes = _codes(item.resource.get("code"))
        if codes is None or codes & wanted[item.kind]:
            _validated(item)
            by_kind[item.kind].append(item)

    record: dict[str, object] = {}
    sources: dict[str, list[str]] = {}
    missing: dict[str, str] = {}
    for feature, source in binding.features.items():
        value, used, reason = _feature(
            feature, source, patient, patient_id, by_kind, reference_time
        )
        record[feature] = value
        sources[feature] = used
        if reason is not None:
            missing[feature] = reason
    return PatientRecord(patient_id, record, sources, missing, reference_time)


def _feature(
    feature: str,
    source: AnySource | None,
    patient: _Item | None,
    patient_id: str,
    by_kind: dict[str, list[_Item]],
    at: datetime,
) -> tuple[object, list[str], str | None]:
    """(value, references used, why it is missing or None)."""
    if source is None:
        return None, [], "not bound"
    if isinstance(source, ObservationSource):
        return _observation(feature, source, by_kind["Observation"], at)
    if isinstance(source, ConditionSource):
        return _condition(source, by_kind["Condition"], at)
    if patient is None:
        return None, [], "no Patient resource given"
    patient_reference = f"Patient/{patient_id}"
    if isinstance(source, AgeSource):
        age, reason = _age(patient.resource.get("birthDate"), at)
        return age, ([patient_reference] if age is not None else []), reason
    # A GenderSource: the last kind of source.
    gender = patient.resource.get("gender")
    if gender is None:
        return None, [], "Patient.gender absent"
    if gender not in source.levels:
        return (
            None,
            [],
            f"Patient.gender is not one of the bound genders ({', '.join(source.levels)})",
        )
    return source.levels[gender], [patient_reference], None


# --- Patient -------------------------------------------------------------------------


def _the_patient(items: list[_Item], patient_id: str | None, what: str) -> tuple[_Item | None, str]:
    """(the validated Patient, its id); the Patient is None only when ``patient_id`` is
    given and no Patient came with the resources."""
    patients = [item for item in items if item.kind == "Patient"]
    if patient_id is None:
        if not patients:
            raise FhirError(f"no Patient in {what}: add the Patient the record is about")
        if len(patients) > 1:
            raise FhirError(
                f"two Patients in {what} ({patients[0].where}, {patients[1].where}): "
                "send one patient's record"
            )
        patient_id = _patient_id(patients[0])
    for item in patients:
        if _patient_id(item) != patient_id:
            raise FhirError(f"{item.where}: a Patient other than the one asked for")
    if not patients:
        return None, patient_id
    _validated(patients[0])
    return patients[0], patient_id


def _patient_id(patient: _Item) -> str:
    identifier = patient.resource.get("id")
    if isinstance(identifier, str) and identifier:
        return identifier
    if patient.full_url and patient.full_url.startswith("urn:uuid:"):
        return patient.full_url.removeprefix("urn:uuid:")
    raise FhirError(f"{patient.where}: the Patient has no id (nor a urn:uuid fullUrl)")


def _identities(patient_id: str, patient: _Item | None) -> set[str]:
    """The references that point at the patient."""
    found = {f"Patient/{patient_id}", f"urn:uuid:{patient_id}"}
    if patient is not None and patient.full_url:
        found.add(patient.full_url)
    return found


def _check_subject(item: _Item, patient_id: str, identities: set[str]) -> None:
    subject = item.resource.get("subject")
    if subject is None:
        raise FhirError(
            f"{item.where}: has no subject; say which patient it is about "
            "(subject.reference Patient/<id>)"
        )
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str) or not reference:
        raise FhirError(f"{item.where}: subject has no reference to the Patient")
    if reference in identities:
        return
    # Absolute or versioned: https://server/fhir/Patient/<id>/_history/2
    path = reference.split("/_history/")[0]
    if path.endswith(f"/Patient/{patient_id}"):
        return
    raise FhirError(
        f"{item.where}: is about another patient than the Patient; send one patient's record"
    )


def _age(birth_date: object, at: datetime) -> tuple[int | None, str | None]:
    if not isinstance(birth_date, str):
        return None, "Patient.birthDate absent"
    birth = _first_day(birth_date)
    if birth is None:
        return None, "Patient.birthDate is not a date"
    today = at.date()
    if birth > today:
        return None, "Patient.birthDate is after the reference time"
    before_birthday = (today.month, today.day) < (birth.month, birth.day)
    return today.year - birth.year - before_birthday, None


# --- Observations --------------------------------------------------------------------


def _observation(
    feature: str, source: ObservationSource, observations: list[_Item], at: datetime
) -> tuple[object, list[str], str | None]:
    codes = set(source.codes)
    named = " or ".join(source.codes)
    window = f" in the last {source.lookback_days:g} days" if source.lookback_days else ""
    found = [item for item in observations if _coded(item.resource.get("code")) & codes]
    if not found:
        return _none(source, f"no Observation with {named}{window}")
    usable = [item for item in found if item.resource.get("status") in USABLE_OBSERVATION]
    if not usable:
        return _none(
            source,
            f"no final, amended or corrected Observation with {named} "
            f"({len(found)} ignored for their status)",
        )
    dated = [(when, n, item) for n, item in enumerate(usable) if (when := _observed(item))]
    dated = [(when, n, item) for when, n, item in dated if when <= at]
    if not dated:
        return _none(source, f"no Observation with {named} dated at or before the reference time")
    start = at - timedelta(days=source.lookback_days) if source.lookback_days else None
    if source.aggregation == "count":
        counted = [item for when, _, item in dated if start is None or when >= start]
        return len(counted), _references(counted), None
    valued = [
        (when, n, item, quantity)
        for when, n, item in dated
        if (quantity := _quantity(item.resource, source)) is not None
    ]
    if not valued:
        part = f" in component {' or '.join(source.component)}" if source.component else ""
        return _none(source, f"no Observation with {named} has a numeric value{part}")
    within = [entry for entry in valued if start is None or entry[0] >= start]
    if not within:
        latest = max(when for when, *_ in valued)
        days = (at - latest).days
        return _none(source, f"latest is {days} days old (lookback {source.lookback_days:g} days)")
    if source.aggregation == "latest":
        _, _, item, quantity = max(within, key=lambda entry: (entry[0], entry[1]))
        return _number(feature, item, quantity, source), _references([item]), None
    numbers = [(_number(feature, item, quantity, source), item) for _, _, item, quantity in within]
    if source.aggregation == "mean":
        mean = fmean(number for number, _ in numbers)
        return mean, _references([item for _, item in numbers]), None
    pick = min if source.aggregation == "min" else max
    number, item = pick(numbers, key=lambda entry: entry[0])
    return number, _references([item]), None


def _none(source: ObservationSource, reason: str) -> tuple[object, list[str], str | None]:
    """Nothing found: a count is 0 (not missing); any other aggregation is missing."""
    if source.aggregation == "count":
        return 0, [], None
    return None, [], reason


def _observed(item: _Item) -> datetime | None:
    resource = item.resource
    for key in ("effectiveDateTime", "effectiveInstant"):
        if isinstance(resource.get(key), str):
            return _instant(resource[key])
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        for key in ("end", "start"):
            if isinstance(period.get(key), str):
                return _instant(period[key])
    if isinstance(resource.get("issued"), str):
        return _instant(resource["issued"])
    return None


def _quantity(resource: dict[str, Any], source: ObservationSource) -> dict[str, Any] | None:
    """The valueQuantity holding the feature's number (of the component when one is bound),
    or None when the Observation carries no number there."""
    quantity = resource.get("valueQuantity")
    if source.component:
        wanted = set(source.component)
        for component in resource.get("component") or []:
            if _coded(component.get("code")) & wanted:
                quantity = component.get("valueQuantity")
                break
        else:
            if not _coded(resource.get("code")) & wanted:
                return None  # a panel without the component: nothing to read
    if not isinstance(quantity, dict) or quantity.get("value") is None:
        return None
    return quantity


def _number(
    feature: str, item: _Item, quantity: dict[str, Any], source: ObservationSource
) -> float:
    number = float(quantity["value"])
    if source.unit is None:
        return number
    code = quantity.get("code")
    if not isinstance(code, str) or not code:
        raise FhirError(
            f"{item.where}: its quantity has no UCUM code; '{feature}' is read in "
            f"{source.unit}: send valueQuantity.code with system {UCUM}"
        )
    system = quantity.get("system")
    if system is not None and system != UCUM:
        raise FhirError(
            f"{item.where}: its quantity's unit is coded in {system}, not UCUM ({UCUM}); "
            f"'{feature}' is read in {source.unit}"
        )
    try:
        return convert(number, code, source.unit)
    except FhirError as error:
        raise FhirError(f"{item.where}: '{feature}': {error}") from None


# --- Conditions ----------------------------------------------------------------------


def _condition(
    source: ConditionSource, conditions: list[_Item], at: datetime
) -> tuple[object, list[str], str | None]:
    codes = set(source.codes)
    start = at - timedelta(days=source.lookback_days) if source.lookback_days else None
    counted = []
    for item in conditions:
        resource = item.resource
        if not _coded(resource.get("code")) & codes:
            continue
        if _status(resource.get("verificationStatus")) in EXCLUDED_VERIFICATION:
            continue
        began = _began(resource)
        if began is not None and began > at:
            continue
        if start is None or _overlaps(resource, began, start):
            counted.append(item)
    if counted:
        return source.present, _references(counted), None
    return source.absent, [], None


def _overlaps(resource: dict[str, Any], began: datetime | None, start: datetime) -> bool:
    """Whether the Condition was active at some time in the window from ``start``."""
    ended = _abated(resource)
    if ended is not None:
        return ended >= start
    if _status(resource.get("clinicalStatus")) in ONGOING_CLINICAL:
        return True
    return began is not None and began >= start


def _began(resource: dict[str, Any]) -> datetime | None:
    if isinstance(resource.get("onsetDateTime"), str):
        return _instant(resource["onsetDateTime"])
    period = resource.get("onsetPeriod")
    if isinstance(period, dict) and isinstance(period.get("start"), str):
        return _instant(period["start"])
    if isinstance(resource.get("recordedDate"), str):
        return _instant(resource["recordedDate"])
    return None


def _abated(resource: dict[str, Any]) -> datetime | None:
    if isinstance(resource.get("abatementDateTime"), str):
        return _instant(resource["abatementDateTime"])
    period = resource.get("abatementPeriod")
    if isinstance(period, dict):
        for key in ("end", "start"):
            if isinstance(period.get(key), str):
                return _instant(period[key])
    return None


def _status(concept: object) -> str | None:
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            return coding["code"]
    return None


# --- Shared --------------------------------------------------------------------------


def _codes(concept: object) -> set[str] | None:
    """``system|code`` of each coding of a CodeableConcept; None when it is not one (the
    resource is then validated, which says what is wrong)."""
    if not isinstance(concept, dict):
        return None
    codings = concept.get("coding", [])
    if not isinstance(codings, list):
        return None
    found = set()
    for coding in codings:
        if not isinstance(coding, dict):
            return None
        system, code = coding.get("system"), coding.get("code")
        if isinstance(system, str) and isinstance(code, str):
            found.add(f"{system}|{code}")
    return found


def _coded(concept: object) -> set[str]:
    """``system|code`` of each coding of a validated CodeableConcept."""
    return _codes(concept) or set()


def _wanted_codes(binding: Binding) -> dict[str, set[str]]:
    wanted: dict[str, set[str]] = {"Observation": set(), "Condition": set()}
    for _, source in binding.bound():
        if isinstance(source, ObservationSource):
            wanted["Observation"].update(source.codes)
        elif isinstance(source, ConditionSource):
            wanted["Condition"].update(source.codes)
    return wanted


def _references(items: list[_Item]) -> list[str]:
    found = (item.reference for item in items)
    return list(dict.fromkeys(reference for reference in found if reference))


def _reference_time(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _first_day(text: str) -> date | None:
    """A FHIR date, partial or full, as its first possible day."""
    match = _PARTIAL_DATE.match(text[:10])
    if match is None:
        return None
    year, month, day = match.groups()
    try:
        return date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return None


def _instant(text: str) -> datetime | None:
    """A FHIR date, dateTime or instant as a tz-aware time (partial: its first instant;
    no zone: UTC); None when it is not one."""
    if "T" not in text:
        day = _first_day(text)
        return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _validated(item: _Item) -> None:
    """FhirError in one line naming the entry and the field when ``item`` is not a valid
    FHIR R4 resource of its type."""
    from pydantic import ValidationError

    model = _models().get(item.kind)
    if model is None:
        return
    try:
        model.model_validate(item.resource)
    except ValidationError as error:
        problems = error.errors()
        first = problems[0]
        place = ".".join(str(part) for part in first["loc"]) or item.kind
        message = str(first["msg"]).removeprefix("Value error, ").rstrip(".")
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise FhirError(
            f"{item.where}: {place}: {message}{more}; it is not a valid FHIR R4 {item.kind}"
        ) from None


@lru_cache(maxsize=1)
def _models() -> dict[str, Any]:
    """The fhir.resources R4B models of the resources a binding reads (imported late:
    they are heavy)."""
    from fhir.resources.R4B.condition import Condition
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.patient import Patient

    return {"Patient": Patient, "Observation": Observation, "Condition": Condition}

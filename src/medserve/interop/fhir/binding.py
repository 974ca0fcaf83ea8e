"""A FHIR binding: where each of a model's features is read from in a patient's record.

One binding per model version (and per site, where sites code things differently),
stored in the registry and edited as YAML::

    model: diabetes
    site: default
    features:
      Glucose:
        kind: observation
        codes: [http://loinc.org|2345-7, http://loinc.org|2339-0]
        unit: mg/dL
        lookback_days: 365
        aggregation: latest
      BloodPressure:
        kind: observation
        codes: [http://loinc.org|85354-9, http://loinc.org|8462-4]
        component: [http://loinc.org|8462-4]
        unit: mm[Hg]
      Age: {kind: age}
      sex: {kind: gender, levels: {male: Male, female: Female}}
      diabetes_history: {kind: condition, codes: [http://snomed.info/sct|44054006]}
      Pregnancies: null          # not bound: always the model's missing value
    cds:                         # optional: offered to EHRs as a CDS Hooks service
      hooks: [patient-view]
      title: Diabetes risk

A code is ``system|code``. An observation's value is its ``valueQuantity`` or, when
``component`` is given, the ``valueQuantity`` of the component carrying one of those
codes (the diastolic pressure inside a blood-pressure panel). Units are UCUM codes:
the value is converted from the resource's ``valueQuantity.code`` (never its display
``unit``) to ``unit``, the unit the model's column was trained in.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medserve.data.schema import Schema
from medserve.errors import ConfigError

Aggregation = Literal["latest", "mean", "min", "max", "count"]
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
# Genders as FHIR R4 codes them (AdministrativeGender).
FHIR_GENDERS = ("male", "female", "other", "unknown")


def _coded(values: list[str]) -> list[str]:
    for value in values:
        system, bar, code = value.partition("|")
        if not bar or not system.strip() or not code.strip():
            raise ValueError(f"'{value}' is not a code: write system|code, e.g. {LOINC}|2345-7")
    return values


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObservationSource(_Source):
    """A measured value: the Observations with any of ``codes``, within the lookback."""

    kind: Literal["observation"] = "observation"
    codes: list[str] = Field(min_length=1, description="system|code; any one matches.")
    component: list[str] | None = Field(
        default=None, description="Read the component with one of these codes (a panel)."
    )
    unit: str | None = Field(
        default=None, description="UCUM code of the model's column; None: no unit (a score)."
    )
    lookback_days: float | None = Field(
        default=365, gt=0, description="Older observations are ignored; None: any age."
    )
    aggregation: Aggregation = "latest"

    _codes = field_validator("codes")(_coded)

    @field_validator("component")
    @classmethod
    def _component_codes(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _coded(values)


class AgeSource(_Source):
    """Age in whole years at the reference time, from ``Patient.birthDate``."""

    kind: Literal["age"] = "age"


class GenderSource(_Source):
    """``Patient.gender`` mapped to the model's levels; a gender not listed is missing."""

    kind: Literal["gender"] = "gender"
    levels: dict[str, str] = Field(min_length=1, description="FHIR gender code → model level.")

    @field_validator("levels")
    @classmethod
    def _fhir_genders(cls, levels: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(levels) - set(FHIR_GENDERS))
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)} not FHIR genders; use {', '.join(FHIR_GENDERS)}"
            )
        return levels


class ConditionSource(_Source):
    """Whether the patient has a Condition with any of ``codes`` (not refuted or entered
    in error): ``present`` if so, else ``absent``."""

    kind: Literal["condition"] = "condition"
    codes: list[str] = Field(min_length=1, description="system|code; any one matches.")
    present: str | float = 1
    absent: str | float = 0
    lookback_days: float | None = Field(default=None, gt=0)

    _codes = field_validator("codes")(_coded)


AnySource = ObservationSource | AgeSource | GenderSource | ConditionSource
Source = Annotated[AnySource, Field(discriminator="kind")]


# The CDS Hooks a model may be offered on (patient-view first).
CDS_HOOKS = ("patient-view", "encounter-discharge")


class CdsOptIn(BaseModel):
    """The model offered as a CDS Hooks service: on which hooks, under what title."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hooks: list[Literal["patient-view", "encounter-discharge"]] = Field(
        default_factory=lambda: ["patient-view"], min_length=1
    )
    title: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class Binding(BaseModel):
    """Per feature of a model, its source in FHIR; ``None`` marks a feature not bound.
    ``cds``, when set, offers the model to EHRs as a CDS Hooks service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    site: str = "default"
    features: dict[str, Source | None]
    cds: CdsOptIn | None = None

    def bound(self) -> Iterator[tuple[str, AnySource]]:
        """(feature, source) for each bound feature, in the binding's order."""
        for name, source in self.features.items():
            if source is not None:
                yield name, source

    @property
    def unbound(self) -> list[str]:
        return [name for name, source in self.features.items() if source is None]

    def resource_types(self) -> list[str]:
        """The FHIR resource types the binding reads (Patient always)."""
        kinds = {type(source) for _, source in self.bound()}
        found = ["Patient"]
        if ObservationSource in kinds:
            found.append("Observation")
        if ConditionSource in kinds:
            found.append("Condition")
        return found

    def check_against(self, schema: Schema) -> None:
        """ConfigError naming the first feature the binding and the model disagree on."""
        features = {spec.name: spec for spec in schema.features}
        unknown = [name for name in self.features if name not in features]
        if unknown:
            raise ConfigError(
                f"the binding names {', '.join(repr(n) for n in unknown)}, which the model "
                f"does not read; its features are {', '.join(features)}"
            )
        absent = [name for name in features if name not in self.features]
        if absent:
            raise ConfigError(
                f"the binding leaves out {', '.join(repr(n) for n in absent)}; list each "
                "feature, with null for one that is not in FHIR (it is then always missing)"
            )
        for name, source in self.bound():
            spec = features[name]
            if isinstance(source, GenderSource) and spec.categories is not None:
                unseen = sorted(set(source.levels.values()) - set(spec.categories))
                if unseen:
                    raise ConfigError(
                        f"'{name}': level(s) {', '.join(unseen)} never seen in training; "
                        f"the model knows {', '.join(spec.categories)}"
                    )
            if isinstance(source, ObservationSource) and source.unit and spec.unit:
                _check_unit(name, source.unit, spec.unit)
            if isinstance(source, (ObservationSource, AgeSource)) and spec.type not in (
                "numeric",
                "binary",
            ):
                raise ConfigError(
                    f"'{name}' is {spec.type} in the model; a {source.kind} gives a number"
                )

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=False), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, *, where: str = "the binding") -> Binding:
        """The binding in ``text``; ConfigError in one line naming the first problem."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{where} is not valid YAML{line}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a mapping with 'model' and 'features'")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            place = ".".join(str(part) for part in first["loc"]) or "binding"
            raise ConfigError(f"{where}: {place}: {first['msg']}") from None


def _check_unit(name: str, bound: str, declared: str) -> None:
    """ConfigError when the binding reads ``name`` in another unit than the one the model's
    schema says it was trained in: the values would reach the model unconverted."""
    from medserve.errors import FhirError
    from medserve.interop.fhir.units import convert, ucum_code

    trained = ucum_code(declared)
    if trained is None:
        return  # a unit people wrote that is no UCUM code: nothing to compare it with
    try:
        same = math.isclose(convert(1.0, bound, trained), 1.0, rel_tol=1e-9)
    except FhirError:
        same = False
    if not same:
        raise ConfigError(
            f"'{name}' is bound in {bound}, but the model learnt it in {declared} ({trained}): "
            f"bind unit: {trained} (values are converted from what the server sends)"
        )

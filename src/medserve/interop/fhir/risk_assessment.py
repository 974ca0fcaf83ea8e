"""The FHIR R4 RiskAssessment a prediction answers with: the risk, its band as a
qualitative risk, the model and version, the resources it read, and notes a clinician
reads (the top factors under their clinical labels, the features that were missing).

``checked`` validates a RiskAssessment with ``fhir.resources`` (R4B, the R4 structures)
and checks what that library leaves out: the coded values, the probability's range, and
that no member is null or empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

from medserve.core.documents import empty_members, without_empty
from medserve.core.risk import band_level

if TYPE_CHECKING:
    from medserve.explain.summary import Factor

QUALITATIVE_RISK_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"
# The risk-probability code system's codes and displays.
QUALITATIVE_RISK_DISPLAY = {
    "negligible": "Negligible likelihood",
    "low": "Low likelihood",
    "moderate": "Moderate likelihood",
    "high": "High likelihood",
    "certain": "Certain",
}
# RiskAssessment.status (ObservationStatus, required binding).
RISK_ASSESSMENT_STATUSES = frozenset(
    {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
MODEL_SYSTEM = "urn:medserve:model"
PROBABILITY_DECIMALS = 4


class InvalidFhirOutput(RuntimeError):
    """A resource medserve built that is not valid FHIR: a bug in medserve, never the
    caller's fault (the HTTP layer answers 500)."""


def qualitative_risk(band_index: int, n_bands: int, band_label: str) -> dict:
    """The band as a CodeableConcept: the lowest band is "low", the highest "high", any
    between "moderate"; ``text`` is the band's own label. A single band says nothing
    about the risk, so it carries the text alone."""
    code = band_level(band_index, n_bands)  # ValueError for a band that is not one
    concept: dict = {"text": band_label}
    if n_bands > 1:
        concept = {
            "coding": [
                {
                    "system": QUALITATIVE_RISK_SYSTEM,
                    "code": code,
                    "display": QUALITATIVE_RISK_DISPLAY[code],
                }
            ],
            "text": band_label,
        }
    return concept


def risk_assessment(
    *,
    patient_ref: str,
    risk: float,
    band: str,
    band_index: int,
    n_bands: int,
    model: str,
    version: int,
    threshold: float,
    basis: Sequence[str],
    raising: Sequence[Factor],
    lowering: Sequence[Factor],
    missing: Mapping[str, str],
    occurrence: datetime,
    outcome_text: str,
    identifier_system: str = "urn:medserve:prediction",
    prediction_id: str,
) -> dict:
    """A final RiskAssessment of the patient ``patient_ref`` ("Patient/123"): ``risk``
    (to 4 decimals) of ``outcome_text``, in band ``band`` (``band_index`` of ``n_bands``);
    ``basis`` the references of the resources the features were read from; ``missing``
    each feature the model had no value for, with why (names only, never values)."""
    if occurrence.tzinfo is None or occurrence.utcoffset() is None:
        raise ValueError("occurrence must carry a time zone")
    if not math.isfinite(risk):
        raise ValueError(f"risk {risk} is not a number")
    prediction = {
        "outcome": {"text": outcome_text},
        "probabilityDecimal": round(float(risk), PROBABILITY_DECIMALS),
        "qualitativeRisk": qualitative_risk(band_index, n_bands, band),
        "rationale": (
            f"Band '{band}' of the model's risk bands; the model calls a risk of "
            f"{threshold:.4g} or more positive."
        ),
    }
    resource = {
        "resourceType": "RiskAssessment",
        "identifier": [{"system": identifier_system, "value": prediction_id}],
        "status": "final",
        "method": {
            "coding": [
                {
                    "system": MODEL_SYSTEM,
                    "code": f"{model}:{version}",
                    "display": f"{model} version {version}",
                }
            ],
            "text": f"medserve model {model} version {version}",
        },
        "subject": {"reference": patient_ref},
        "occurrenceDateTime": occurrence.isoformat(timespec="seconds"),
        "basis": [{"reference": reference} for reference in dict.fromkeys(basis) if reference],
        "prediction": [prediction],
        "note": [{"text": factors_note(raising, lowering)}, {"text": missing_note(missing)}],
    }
    return without_empty(resource)


def factors_note(raising: Sequence[Factor], lowering: Sequence[Factor]) -> str:
    """e.g. "Top factors: raised by plasma glucose = 183 mg/dL, BMI = 41.3 kg/m2;
    lowered by age = 31 years." """
    parts = []
    if raising:
        parts.append("raised by " + ", ".join(factor.shown for factor in raising))
    if lowering:
        parts.append("lowered by " + ", ".join(factor.shown for factor in lowering))
    if not parts:
        return "Top factors: no input moved the risk notably."
    return "Top factors: " + "; ".join(parts) + "."


def missing_note(missing: Mapping[str, str]) -> str:
    """e.g. "Missing, so read as the model's missing value: Glucose: no Observation in
    the last 365 days; Insulin: not bound."; "" when nothing was missing (the note is
    then left out)."""
    if not missing:
        return ""
    listed = "; ".join(f"{name}: {why}" if why else name for name, why in missing.items())
    return f"Missing, so read as the model's missing value: {listed}."


def checked(resource: dict) -> dict:
    """``resource`` itself once it is a valid R4 RiskAssessment (structure by
    ``fhir.resources``, codes and probabilities by us, no empty member);
    InvalidFhirOutput naming the first problem otherwise."""
    from pydantic import ValidationError

    if resource.get("resourceType") != "RiskAssessment":
        raise InvalidFhirOutput("not a RiskAssessment")
    empty = empty_members(resource)
    if empty:
        raise InvalidFhirOutput(f"RiskAssessment has empty members: {', '.join(empty)}")
    try:
        _risk_assessment_model().model_validate(resource)
    except ValidationError as error:
        first = error.errors()[0]
        place = ".".join(str(part) for part in first["loc"])
        raise InvalidFhirOutput(f"RiskAssessment.{place}: {first['msg']}") from None
    if resource.get("status") not in RISK_ASSESSMENT_STATUSES:
        raise InvalidFhirOutput(f"RiskAssessment.status '{resource.get('status')}' is not coded")
    if "reference" not in resource.get("subject", {}):
        raise InvalidFhirOutput("RiskAssessment.subject has no reference")
    for i, prediction in enumerate(resource.get("prediction", [])):
        probability = prediction.get("probabilityDecimal")
        if probability is not None and not 0 <= probability <= 1:
            raise InvalidFhirOutput(
                f"RiskAssessment.prediction[{i}].probabilityDecimal {probability} is not in [0, 1]"
            )
        for coding in prediction.get("qualitativeRisk", {}).get("coding", []):
            if (
                coding.get("system") != QUALITATIVE_RISK_SYSTEM
                or coding.get("code") not in QUALITATIVE_RISK_DISPLAY
            ):
                raise InvalidFhirOutput(
                    f"RiskAssessment.prediction[{i}].qualitativeRisk "
                    f"{coding.get('system')}|{coding.get('code')} is not a risk-probability code"
                )
    return resource


@cache
def _risk_assessment_model() -> type:
    # fhir.resources is heavy: loaded on the first RiskAssessment, not on import medserve.
    from fhir.resources.R4B.riskassessment import RiskAssessment

    return RiskAssessment

"""A first binding for a model, guessed from its column names, for a person to edit.

``suggest_binding`` matches each feature's name (then its label) against a curated table
of LOINC-coded measurements and the derived features (age, gender), and says, one line
per feature, what it could not map and why, and which mappings need a second look.

Sources of the codes (checked against them, not recalled):
- LOINC, https://loinc.org (each code's page, e.g. https://loinc.org/2345-7/), for the
  laboratory codes: glucose 2345-7 / 2339-0, cholesterol 2093-3, HDL 2085-9, LDL
  18262-6 / 13457-7, triglyceride 2571-8, HbA1c 4548-4, creatinine 2160-0, insulin 20448-7.
- The FHIR R4 vital-signs profiles, http://hl7.org/fhir/R4/observation-vitalsigns.html,
  for the vital signs and their UCUM units: blood-pressure panel 85354-9 with systolic
  8480-6 and diastolic 8462-4 as components, heart rate 8867-4, respiratory rate 9279-1,
  oxygen saturation 2708-6 / 59408-5 (pulse oximetry), body temperature 8310-5, BMI
  39156-5, body weight 29463-7, body height 8302-2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medserve.data.schema import ColumnSpec, Schema
from medserve.interop.fhir.binding import (
    LOINC,
    AgeSource,
    AnySource,
    Binding,
    GenderSource,
    ObservationSource,
)
from medserve.interop.fhir.units import compatible, ucum_code

HAND = "bind it by hand or leave null"


@dataclass(frozen=True)
class _Measure:
    """A measurement a record holds as an Observation, and its usual UCUM unit."""

    what: str
    codes: tuple[str, ...]
    unit: str
    component: tuple[str, ...] | None = None
    # Vital signs and most labs: the last year. Lipids: five years (adults are screened
    # every 4-6 years). Height: ten years (stable in adults).
    lookback_days: float = 365


_BP_PANEL = "85354-9"
_MEASURES = {
    "glucose": _Measure("glucose", ("2345-7", "2339-0"), "mg/dL"),
    "systolic": _Measure(
        "systolic blood pressure", (_BP_PANEL, "8480-6"), "mm[Hg]", component=("8480-6",)
    ),
    "diastolic": _Measure(
        "diastolic blood pressure", (_BP_PANEL, "8462-4"), "mm[Hg]", component=("8462-4",)
    ),
    "heart_rate": _Measure("heart rate", ("8867-4",), "/min"),
    "respiratory_rate": _Measure("respiratory rate", ("9279-1",), "/min"),
    "spo2": _Measure("oxygen saturation", ("2708-6", "59408-5"), "%"),
    "temperature": _Measure("body temperature", ("8310-5",), "Cel"),
    "bmi": _Measure("body mass index", ("39156-5",), "kg/m2"),
    "weight": _Measure("body weight", ("29463-7",), "kg"),
    "height": _Measure("body height", ("8302-2",), "cm", lookback_days=3650),
    "cholesterol": _Measure("total cholesterol", ("2093-3",), "mg/dL", lookback_days=1825),
    "hdl": _Measure("HDL cholesterol", ("2085-9",), "mg/dL", lookback_days=1825),
    "ldl": _Measure("LDL cholesterol", ("18262-6", "13457-7"), "mg/dL", lookback_days=1825),
    "triglycerides": _Measure("triglycerides", ("2571-8",), "mg/dL", lookback_days=1825),
    "hba1c": _Measure("HbA1c", ("4548-4",), "%"),
    "creatinine": _Measure("creatinine", ("2160-0",), "mg/dL"),
    # Insulin is dosed in international units: UCUM u[IU]/mL (the µU/mL of lab reports).
    "insulin": _Measure("insulin", ("20448-7",), "u[IU]/mL"),
}

# Normalised names (lower case, letters and digits only) → measure, with a note when the
# mapping rests on a convention a person should confirm.
_OGTT = (
    "if the model learnt a 2-hour oral glucose tolerance value (as Pima's Glucose is), "
    "a record's routine glucose reads lower"
)
_SYNONYMS: dict[str, tuple[str, str | None]] = {
    **dict.fromkeys(
        ("glucose", "glu", "bloodglucose", "plasmaglucose", "serumglucose", "bloodsugar"),
        ("glucose", _OGTT),
    ),
    **dict.fromkeys(
        ("systolic", "sbp", "sysbp", "systolicbp", "systolicbloodpressure", "aphi"),
        ("systolic", None),
    ),
    **dict.fromkeys(
        ("trestbps", "restingbp", "restingbloodpressure", "restbp"),
        (
            "systolic",
            "resting blood pressure, systolic in the UCI heart data; bind 8462-4 if diastolic",
        ),
    ),
    **dict.fromkeys(
        ("diastolic", "dbp", "diabp", "diastolicbp", "diastolicbloodpressure", "aplo"),
        ("diastolic", None),
    ),
    # Pima's BloodPressure is the diastolic pressure in mm Hg.
    "bloodpressure": (
        "diastolic",
        "diastolic in the Pima data; bind 8480-6 if it is systolic",
    ),
    **dict.fromkeys(
        ("heartrate", "hr", "pulse", "pulserate", "restinghr", "restingheartrate"),
        ("heart_rate", None),
    ),
    **dict.fromkeys(
        ("respiratoryrate", "resprate", "respirationrate", "rr", "breathingrate"),
        ("respiratory_rate", None),
    ),
    **dict.fromkeys(("spo2", "sao2", "o2sat", "oxygensaturation", "oxygensat"), ("spo2", None)),
    **dict.fromkeys(("temperature", "temp", "bodytemperature", "bodytemp"), ("temperature", None)),
    **dict.fromkeys(("bmi", "bodymassindex"), ("bmi", None)),
    **dict.fromkeys(("weight", "bodyweight", "wt"), ("weight", None)),
    **dict.fromkeys(("height", "bodyheight", "ht"), ("height", None)),
    **dict.fromkeys(
        ("chol", "cholesterol", "totalcholesterol", "totchol", "serumcholesterol", "tc"),
        ("cholesterol", None),
    ),
    **dict.fromkeys(("hdl", "hdlc", "hdlcholesterol"), ("hdl", None)),
    **dict.fromkeys(("ldl", "ldlc", "ldlcholesterol"), ("ldl", None)),
    **dict.fromkeys(
        ("triglycerides", "triglyceride", "trig", "trigs", "tg"), ("triglycerides", None)
    ),
    **dict.fromkeys(
        ("hba1c", "a1c", "hemoglobina1c", "glycatedhemoglobin", "glycohemoglobin"),
        ("hba1c", None),
    ),
    **dict.fromkeys(("creatinine", "creat", "serumcreatinine", "scr"), ("creatinine", None)),
    **dict.fromkeys(
        ("insulin", "seruminsulin"),
        (
            "insulin",
            "if the model learnt a 2-hour insulin (as Pima's is), a fasting one reads lower",
        ),
    ),
}
_AGE = {"age", "ageyears", "ageinyears", "patientage"}
_GENDER = {"sex", "gender", "patientsex", "patientgender"}

# Names the table knows and deliberately leaves unbound, with the reason.
_UNMAPPABLE = {
    **dict.fromkeys(
        ("thalch", "thalach", "maxhr", "maxheartrate"),
        "maximum heart rate reached in an exercise test, not an Observation a record "
        "holds; leave null",
    ),
    "bp": "ambiguous: bind systolic (8480-6) or diastolic (8462-4) by hand",
    "fbs": "a derived flag (fasting blood sugar > 120 mg/dL), not an Observation; " + HAND,
    "diabetespedigreefunction": "a score computed from family history, not in FHIR; " + HAND,
}

# Trailing name parts that only say the unit ("weight_kg", "age_years").
_UNIT_TOKENS = {"kg", "cm", "mm", "hg", "mmhg", "mg", "dl", "mgdl", "mmol", "l", "bpm", "pct"}
_GENDER_WORDS = {
    "male": {"male", "m", "man", "men"},
    "female": {"female", "f", "woman", "women"},
    "other": {"other"},
    "unknown": {"unknown"},
}


def suggest_binding(schema: Schema, model: str) -> tuple[Binding, list[str]]:
    """A binding for ``model`` proposed from ``schema``'s features, and one line per
    feature it could not map (and why) or whose mapping needs checking.

    Unmapped features are null in the binding (always the model's missing value); the
    binding passes ``check_against(schema)``."""
    features: dict[str, AnySource | None] = {}
    notes: list[str] = []
    for spec in schema.features:
        source, note = _suggest(spec)
        features[spec.name] = source
        if note is not None:
            notes.append(f"{spec.name}: {note}")
    binding = Binding(model=model, features=features)
    binding.check_against(schema)
    return binding, notes


def _suggest(spec: ColumnSpec) -> tuple[AnySource | None, str | None]:
    """(source or None, a line for the person: why unmapped, or what to check)."""
    for key in _keys(spec):
        if key in _UNMAPPABLE:
            return None, _UNMAPPABLE[key]
        if key in _AGE:
            if not spec.numeric_encoded:
                return None, f"is {spec.type} in the model; age gives a number; {HAND}"
            return AgeSource(), None
        if key in _GENDER:
            return _gender(spec)
        if key in _SYNONYMS:
            name, note = _SYNONYMS[key]
            return _observation(spec, _MEASURES[name], note)
    return None, f"no LOINC in the curated table; {HAND}"


def _keys(spec: ColumnSpec) -> list[str]:
    """The names to look up, best first: the name, the label, each without a unit suffix."""
    found: list[str] = []
    for text in (spec.name, spec.label):
        if not text:
            continue
        tokens = [token for token in re.split(r"[^a-z0-9]+", text.lower()) if token]
        found.append("".join(tokens))
        while len(tokens) > 1 and tokens[-1] in _UNIT_TOKENS | {"years", "yrs", "yr"}:
            tokens.pop()
            found.append("".join(tokens))
    return list(dict.fromkeys(key for key in found if key))


def _observation(
    spec: ColumnSpec, measure: _Measure, note: str | None
) -> tuple[AnySource | None, str | None]:
    if not spec.numeric_encoded:
        levels = f" ({', '.join(spec.categories)})" if spec.categories else ""
        return None, (
            f"is {spec.type}{levels} in the model; an Observation of {measure.what} gives a "
            f"number; {HAND}"
        )
    notes = [note] if note else []
    unit = measure.unit
    if spec.unit:
        given = ucum_code(spec.unit)
        if given is None:
            notes.append(f"unit '{spec.unit}' is not UCUM; bound in {unit}, check it")
        else:
            unit = given
            if not compatible(measure.unit, given):
                notes.append(
                    f"{measure.unit} does not convert to {given}: the server must send {given}"
                )
    source = ObservationSource(
        codes=[f"{LOINC}|{code}" for code in measure.codes],
        component=[f"{LOINC}|{code}" for code in measure.component] if measure.component else None,
        unit=unit,
        lookback_days=measure.lookback_days,
    )
    if not notes:
        return source, None
    return source, (
        f"read as {measure.what} (LOINC {(measure.component or measure.codes)[0]}); "
        f"check: {'; '.join(notes)}"
    )


def _gender(spec: ColumnSpec) -> tuple[AnySource | None, str | None]:
    by_hand = "bind it by hand: kind: gender, levels: {male: ..., female: ...}"
    if not spec.categories:
        return None, f"coded as numbers, which one is male is not known; {by_hand}"
    levels = {}
    for gender, words in _GENDER_WORDS.items():
        for level in spec.categories:
            if level.strip().lower() in words:
                levels[gender] = level
                break
    if "male" not in levels or "female" not in levels:
        return None, (
            f"levels {', '.join(spec.categories)} do not say which is male and which "
            f"female; {by_hand}"
        )
    return GenderSource(levels=levels), None

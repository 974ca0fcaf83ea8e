"""Which columns hold identifiers: by the column's name first, then by its content.

Kinds follow the HIPAA Safe Harbor list of 18 identifiers (45 CFR 164.514(b)(2)) plus
the quasi-identifiers that stay in a Safe Harbor table (sex, race) and free text.
Content rules apply whatever a column is called and judge it by the share of its values
that have a shape (see ``shapes.py``), repeated values included; where rows repeat a
patient's visits, "one value per person" is judged per patient. Detection never returns
or logs a value, only the kind and how it was found.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from medserve.deid.shapes import (
    AGE_VALUE,
    ALL_DIGITS,
    PERSON_NAME,
    PSEUDONYM,
    RECORD_ID,
    is_date,
    is_ssn_digits,
    strong_kind,
)

Kind = Literal[
    "name",
    "record_id",
    "ssn",
    "phone",
    "fax",
    "email",
    "url",
    "ip",
    "street_address",
    "geography",
    "zip",
    "birth_date",
    "date",
    "age",
    "licence_id",
    "vehicle_id",
    "device_id",
    "text",
    "sex",
    "race",
    "none",
]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]

# Identifiers that only ever leave the table (default action: drop).
DIRECT_KINDS = frozenset(
    {
        "name",
        "ssn",
        "phone",
        "fax",
        "email",
        "url",
        "ip",
        "street_address",
        "geography",
        "licence_id",
        "vehicle_id",
        "device_id",
    }
)
# Identifiers kept as keyed pseudonyms by default, so records of one patient still link.
LINKING_KINDS = frozenset({"record_id"})
# Kinds with a Safe Harbor generalisation: dates → year or shift, ages → 90+, ZIP → ZIP3,
# free text → identifiers replaced by typed placeholders.
GENERALISABLE_KINDS = frozenset({"birth_date", "date", "age", "zip", "text"})
# Left in the table, but they single people out in combination: the k-anonymity inputs.
QUASI_IDENTIFIER_KINDS = ("age", "birth_date", "sex", "race", "zip", "geography")

SAMPLE_SIZE = 1000
# Shares of a column's present values (repeated values count each time they occur).
CONTENT_SHARE = 0.8  # record numbers, ZIP codes, SSNs without dashes, ages with a unit
DIRECT_SHARE = 0.2  # phones, e-mails, addresses …: the rest of such a column is not data
NAME_SHARE = 0.8  # person names, in a column with about one value per person
DATE_SHARE = 0.5  # a column half dates is a date column (with bad values: an error later)
VARIED_SHARE = 0.5  # "about one value per person": distinct values per row or per patient
MANY_IDS = 10  # this many different record numbers are a record-number column, repeated or not

# People whose names are identifiers: the patient, relatives, household members, and the
# clinicians named in exports.
_PERSON = (
    r"(first|last|middle|given|family|full|patient|pt|maiden|mother|father|spouse|nok|"
    r"next_of_kin|contact|emergency_contact|emergency|physician|doctor|provider|attending|"
    r"nurse|guarantor|referrer|referring|sur|fore|guardian|parent|relative|kin|sibling|"
    r"brother|sister|son|daughter|child|wife|husband|partner|caregiver|carer|proxy|"
    r"surrogate|poa|grandparent|grandmother|grandfather|household|member|employer|"
    r"informant|witness|legal|preferred|nick|alias|other)"
)
# A column named only for a person's role ("Patient", "Attending", "Next of Kin") holds
# that person's name in most exports; a record number when its content says so.
_PERSON_ROLE = re.compile(
    r"^((attending|admitting|referring|ordering|treating|consulting|rendering|performing|"
    r"primary|primary_care|responsible|signing|discharging)_)?"
    r"(patient|pt|attending|physician|doctor|provider|clinician|practitioner|surgeon|"
    r"anesthesiologist|anaesthetist|resident|nurse|rn|md|pcp|referring|referrer|guardian|"
    r"next_of_kin|nok|kin|emergency_contact|caregiver|carer|spouse|partner|mother|father|"
    r"parent|guarantor|subscriber|insured|policy_holder|policyholder|author|signed_by|"
    r"seen_by|ordered_by|entered_by)$"
)
# Checked in order: the first pattern that matches the normalised column name wins.
_NAME_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        (
            "ssn",
            r"(^|_)(ssn|social_security(_number|_no|_num)?|social_sec(_no)?|soc_?sec|"
            r"ss_?(no|num|number))($|_)",
        ),
        ("email", r"(^|_)e_?mail(_address|_addr)?($|_)"),
        ("url", r"(^|_)(url|website|web_address|web_page|homepage)($|_)"),
        ("ip", r"(^|_)(ip_address|ip_addr|ipaddress)($|_)|^ip$"),
        ("fax", r"(^|_)fax"),
        ("phone", r"(^|_)(phone|telephone|tel|mobile|cellphone|contact_number)($|_)"),
        ("vehicle_id", r"(^|_)(vehicle|vin|licen[cs]e_plate|plate_number|plate)($|_)"),
        ("licence_id", r"(^|_)(licen[cs]e|certificate|npi|dea)(_id|_no|_number|_num)?($|_)"),
        (
            "device_id",
            r"(^|_)(device_(id|serial|number|no)|serial(_number|_no)?|imei|udi|mac_address)($|_)",
        ),
        ("zip", r"(^|_)(zip|zipcode|zip_code|postal|postcode|postal_code)(_?\d|_plus_?4)?($|_)"),
        ("street_address", r"(^|_)(address|street|addr|address_line|addr_line)\d*($|_)"),
        # Places smaller than a state. A state alone is allowed by Safe Harbor, so a
        # "state" column is kept; "City, ST" values are found by content.
        (
            "geography",
            r"(^|_)(city|county|town|hometown|precinct|municipality|neighbou?rhood|location|"
            r"residence|birthplace|place_of_birth|city_of_birth|city_state|home_town)($|_)",
        ),
        # `born_year`: a `born` column after a first pass (``dates.year_column``).
        (
            "birth_date",
            r"(^|_)(dob|birthdate|birthday|date_of_birth|birth_date|born_on|birth_year|"
            r"birthyear|year_of_birth|yob|birth_dt)($|_)|^(birth|born|born_year)$",
        ),
        # Ages are found by column name only: a number column says nothing about its unit.
        (
            "age",
            r"(^|_)age(_years|_yrs|_yr|_y|_in_years|_in_yrs|_at_[a-z_]+)?$"
            r"|^(yrs|years|yr)(_old|_of_age)?$|^(yo|y_o|age_yrs)$",
        ),
        ("name", rf"(^|_){_PERSON}_?name($|_)|^name$|(^|_)(surname|forename|fname|lname)($|_)"),
        (
            "record_id",
            r"(^|_)(mrn|medical_record(_number|_no)?|record_(number|no|id)|patient_?id|pat_id|"
            r"pt_id|subject_?id|person_?id|account(_number|_no|_id)?|acct(_no|_number)?|"
            r"chart(_no|_num|_number|_id)?|med_?rec(_no|_num|_number)?|mr_(no|num|number)|"
            r"empi|csn|"
            r"encounter_?id|visit_?id|admission_id|hadm_id|beneficiary(_id|_number)?|"
            r"member_id|health_plan(_id|_number)?|insurance_(id|number)|policy_number|"
            r"claim_(id|number))($|_)|^id$",
        ),
        ("date", r"(^|_)(date|datetime|timestamp|dt)($|_)"),
        ("sex", r"^(sex|gender|sex_at_birth)$"),
        ("race", r"^(race|ethnicity|race_ethnicity)$"),
        (
            "text",
            r"(^|_)(note|notes|comment|comments|remark|remarks|memo|narrative|free_text|"
            r"freetext|text|hpi|impression|findings|discharge_summary|clinical_summary|"
            r"annotation|annotations)($|_)",
        ),
    )
)


@dataclass(frozen=True)
class Detection:
    """What a column holds and how that was found (``"name"``, ``"content"``, ``"type"``)."""

    column: str
    kind: str
    detected_by: str | None


def normalise_name(column: object) -> str:
    """``"Patient Name"``, ``"patientName"`` → ``"patient_name"``."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(column))
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def kind_from_name(column: object) -> str | None:
    name = normalise_name(column)
    for kind, pattern in _NAME_RULES:
        if pattern.search(name):
            return kind
    return None


def detect_column(
    column: object, values: pd.Series, *, patients: pd.Series | None = None
) -> Detection:
    """The kind of one column; ``"none"`` for what Safe Harbor lets through unchanged.

    ``patients`` (the patient of each row, when the table has a patient id) lets a column
    that repeats with its patient's visits count as one value per person.
    """
    by_name = kind_from_name(column)
    if by_name is None and _PERSON_ROLE.fullmatch(normalise_name(column)):
        by_name = "record_id" if _person_role_holds_ids(values) else "name"
    if by_name == "text" and (
        pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
    ):
        by_name = None  # a "notes" column of numbers or flags holds no text to scrub
    if by_name is not None and by_name not in ("sex", "race"):
        return Detection(str(column), by_name, "name")
    if pd.api.types.is_datetime64_any_dtype(values):
        return Detection(str(column), "date", "type")
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return Detection(str(column), by_name or "none", "name" if by_name else None)
    by_content = kind_from_content(values, patients=patients)
    if by_name is not None and by_content not in DIRECT_KINDS:
        return Detection(str(column), by_name, "name")  # a "sex" column of F and M
    return Detection(str(column), by_content or "none", "content" if by_content else None)


def kind_from_content(values: pd.Series, *, patients: pd.Series | None = None) -> str | None:
    """The kind the values look like, judged by the share of present values (repeats
    included) that have its shape. A column mixing direct identifiers (e-mails and phones
    in one "contact" column) is that mix's most common kind."""
    sample = _sample(values)
    if sample.empty:
        return None
    direct = Counter(kind for kind in map(strong_kind, sample) if kind)
    if direct and sum(direct.values()) / len(sample) >= DIRECT_SHARE:
        return direct.most_common(1)[0][0]
    if _share(sample, is_date) >= DATE_SHARE:
        return "date"
    for kind, test in _SHAPED:
        if _share(sample, test) >= CONTENT_SHARE:
            return kind
    varied = _varied(sample, patients)
    if (varied or sample.nunique() >= MANY_IDS) and _looks_like_record_ids(sample):
        return "record_id"  # repeated with each visit, or one per row
    names = _share(sample, PERSON_NAME.fullmatch)
    if varied and names and names + sum(direct.values()) / len(sample) >= NAME_SHARE:
        return "name"
    if _looks_like_text(values, min_words=6, min_chars=40):
        return "text"
    return None


def _is_zip(value: str) -> bool:
    return len(value) in (5, 10) and _ZIP.fullmatch(value) is not None


def _is_age(value: str) -> bool:
    return AGE_VALUE.fullmatch(value) is not None


def _is_pseudonym(value: str) -> bool:
    return PSEUDONYM.fullmatch(value) is not None


_ZIP = re.compile(r"\d{5}(-\d{4})?")
# Shapes that a column needs in most of its values (CONTENT_SHARE), whoever the values are
# about: repeated values count. Pseudonyms first: a second pass keeps them as they are.
_SHAPED = (
    ("record_id", _is_pseudonym),
    ("ssn", is_ssn_digits),
    ("zip", _is_zip),
    ("age", _is_age),
)


def _varied(sample: pd.Series, patients: pd.Series | None) -> bool:
    """About one value per person: half the values differ, or, where rows repeat patients,
    the values follow the patient (one per patient for most) and half the patients have a
    value of their own. Diagnoses and wards change from visit to visit; names do not."""
    if sample.nunique() >= VARIED_SHARE * len(sample):
        return True
    pairs = _patient_values(sample, patients)
    count = pairs["patient"].nunique() if pairs is not None else 0
    return (
        pairs is not None
        and follows_patients(sample, patients)
        and pairs["value"].nunique() >= VARIED_SHARE * count
    )


def follows_patients(values: pd.Series, patients: pd.Series | None) -> bool:
    """Most patients (CONTENT_SHARE) keep one value in all their rows, as names do."""
    pairs = _patient_values(values.dropna().astype(str).str.strip(), patients)
    if pairs is None:
        return False
    one_each = (pairs.groupby("patient")["value"].nunique() == 1).mean()
    return bool(one_each >= CONTENT_SHARE)


def _patient_values(values: pd.Series, patients: pd.Series | None) -> pd.DataFrame | None:
    """Distinct (patient, value) pairs, or None without two patients to compare."""
    if patients is None:
        return None
    pairs = pd.DataFrame({"patient": patients.reindex(values.index), "value": values})
    pairs = pairs.dropna().drop_duplicates()
    return pairs if pairs["patient"].nunique() >= 2 else None


def _looks_like_record_ids(sample: pd.Series) -> bool:
    """Identifier-shaped values, not plain measurement numbers (see ``RECORD_ID``)."""
    digits = sample[sample.map(lambda value: ALL_DIGITS.fullmatch(value) is not None)]
    widths = digits.str.len()
    numbered = bool(
        len(digits)
        and widths.min() >= 6
        and ((digits.str.startswith("0").any()) or (widths.nunique() == 1 and widths.min() >= 8))
    )
    shaped = _share(sample, RECORD_ID.fullmatch)
    return shaped + (len(digits) / len(sample) if numbered else 0.0) >= CONTENT_SHARE


def _person_role_holds_ids(values: pd.Series) -> bool:
    """A "Patient" column of numbers or record numbers links records: a record id."""
    if pd.api.types.is_numeric_dtype(values):
        return True
    sample = _sample(values)
    return bool(len(sample)) and (
        _looks_like_record_ids(sample)
        or _share(sample, lambda value: ALL_DIGITS.fullmatch(value) is not None) >= CONTENT_SHARE
    )


def detect_columns(frame: pd.DataFrame) -> dict[str, Detection]:
    return {str(c): detect_column(c, frame[c]) for c in frame.columns}


def _sample(values: pd.Series) -> pd.Series:
    present = values.dropna()
    return present.iloc[:SAMPLE_SIZE].astype(str).str.strip()


def _share(sample: pd.Series, test: object) -> float:
    return float(sum(1 for value in sample if test(value))) / len(sample)  # type: ignore[operator]


def _looks_like_text(values: pd.Series, *, min_words: int, min_chars: int = 0) -> bool:
    if pd.api.types.is_numeric_dtype(values):
        return False
    sample = _sample(values)
    if sample.empty:
        return False
    words = sample.str.split().str.len().mean()
    return bool(words >= min_words and sample.str.len().mean() >= min_chars)

"""Which columns hold identifiers: by the column's name first, then by its content.

Kinds follow the HIPAA Safe Harbor list of 18 identifiers (45 CFR 164.514(b)(2)) plus
the quasi-identifiers that stay in a Safe Harbor table (sex, race) and free text.
Detection never returns or logs a value, only the kind and how it was found.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import pandas as pd

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
CONTENT_SHARE = 0.8  # share of sampled values that must look like the kind
DATE_SHARE = 0.5  # a column half dates is a date column (with bad values: an error later)

_PERSON = (
    r"(first|last|middle|given|family|full|patient|pt|maiden|mother|father|spouse|nok|"
    r"next_of_kin|contact|emergency_contact|physician|doctor|provider|attending|nurse|"
    r"guarantor|referrer|referring|sur|fore)"
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
        ("ssn", r"(^|_)(ssn|social_security(_number|_no|_num)?|social_sec(_no)?)($|_)"),
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
        ("zip", r"(^|_)(zip|zipcode|zip_code|postal|postcode|postal_code)($|_)"),
        ("street_address", r"(^|_)(address|street|addr|address_line|addr_line)\d*($|_)"),
        # Places smaller than a state. A state alone is allowed by Safe Harbor, so a
        # "state" column is kept; "City, ST" values are found by content.
        (
            "geography",
            r"(^|_)(city|county|town|hometown|precinct|municipality|neighbou?rhood|location|"
            r"residence|birthplace|place_of_birth|city_of_birth|city_state|home_town)($|_)",
        ),
        (
            "birth_date",
            r"(^|_)(dob|birthdate|birthday|date_of_birth|birth_date|born_on)($|_)|^birth$",
        ),
        # Ages are found by column name only: a number column says nothing about its unit.
        (
            "age",
            r"(^|_)age(_years|_yrs|_yr|_y|_in_years|_at_[a-z_]+)?$"
            r"|^(yrs|years|yr|years_old|yo|y_o|age_yrs)$",
        ),
        ("name", rf"(^|_){_PERSON}_?name($|_)|^name$|(^|_)(surname|forename|fname|lname)($|_)"),
        (
            "record_id",
            r"(^|_)(mrn|medical_record(_number|_no)?|record_(number|no|id)|patient_?id|pat_id|"
            r"pt_id|subject_?id|person_?id|account(_number|_no|_id)?|acct(_no|_number)?|"
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

_STREET_SUFFIXES = (
    "alley|aly|annex|anx|arcade|avenue|ave|bayou|beach|bend|bluff|bluffs|bottom|boulevard|"
    "blvd|branch|bridge|brook|brooks|burg|burgs|bypass|camp|canyon|cape|causeway|center|ctr|"
    "centers|circle|cir|circles|cliff|cliffs|club|common|commons|corner|corners|course|"
    "court|ct|courts|cove|coves|creek|crescent|crest|crossing|crossroad|curve|dale|dam|"
    "divide|drive|dr|drives|estate|estates|expressway|expy|extension|extensions|fall|falls|"
    "ferry|field|fields|flat|flats|ford|fords|forest|forge|forges|fork|forks|fort|freeway|"
    "fwy|garden|gardens|gateway|glen|glens|green|greens|grove|groves|harbor|harbors|haven|"
    "heights|highway|hwy|hill|hills|hollow|inlet|island|islands|isle|junction|junctions|"
    "key|keys|knoll|knolls|lake|lakes|land|landing|lane|ln|light|lights|loaf|lock|locks|"
    "lodge|loop|mall|manor|manors|meadow|meadows|mews|mill|mills|mission|motorway|mount|"
    "mountain|mountains|neck|orchard|oval|overpass|park|parks|parkway|pkwy|parkways|pass|"
    "passage|path|pike|pine|pines|place|pl|plain|plains|plaza|point|points|port|ports|"
    "prairie|radial|ramp|ranch|rapid|rapids|rest|ridge|ridges|river|road|rd|roads|route|"
    "row|rue|run|shoal|shoals|shore|shores|skyway|spring|springs|spur|spurs|square|sq|"
    "squares|station|stravenue|stream|street|st|streets|summit|terrace|ter|throughway|"
    "trace|track|trafficway|trail|trl|trailer|tunnel|turnpike|underpass|union|unions|"
    "valley|valleys|via|viaduct|view|views|village|villages|ville|vista|walk|walks|wall|"
    "way|ways|well|wells"
)
STREET_ADDRESS = re.compile(
    rf"\b\d{{1,6}}(?:\s+[A-Z][A-Za-z'.-]*){{1,4}}\s+(?:{_STREET_SUFFIXES})\b\.?"
    r"(?:,?\s+(?:apt|apartment|suite|ste|unit|#)\.?\s*#?\s*[\w-]+)?"
    # military addresses, which Faker and real exports both contain
    r"|\b(?:PSC|Unit|USNS|USNV|USS|USCGC)\s+[\w ]{1,30}?,?\s+Box\s+\d+"
    r"|\b(?:USNS|USNV|USS|USCGC)\s+[A-Z][a-z]+",
    re.IGNORECASE,
)

# A vehicle identification number: 17 characters without I, O or Q, letters and digits
# both (the check digit in position 9 is not verified: many exports carry older VINs).
VIN = re.compile(r"(?=[A-HJ-NPR-Z0-9]{17}$)(?=.*[A-Z])(?=.*\d)[A-HJ-NPR-Z0-9]{17}")
US_STATE_CODES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|"
    "NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|"
    "AS|GU|MP|PR|VI|FM|MH|PW|AA|AE|AP"
)
# "Mariaborough, NV", "St. Louis, MO 63101": a city is smaller than a state.
CITY_STATE = re.compile(
    rf"[A-Z][A-Za-z.'’-]*(?: [A-Za-z.'’-]+){{0,3}}, (?:{US_STATE_CODES})(?: \d{{5}}(?:-\d{{4}})?)?"
)

_CONTENT_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("email", re.compile(r"[\w.+'-]+@[\w-]+(\.[\w-]+)+")),
    ("url", re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)),
    ("ssn", re.compile(r"\d{3}-\d{2}-\d{4}")),
    (
        "phone",
        re.compile(
            r"(\+?0*1[-.\s]?)?\(?\d{3}\)?[-.\s]?\d{3}[-.\s]?\d{4}(\s*(x|ext\.?)\s*\d{1,5})?",
            re.IGNORECASE,
        ),
    ),
    ("street_address", re.compile(rf"(?:{STREET_ADDRESS.pattern}).*", re.IGNORECASE | re.DOTALL)),
    ("vehicle_id", VIN),
    ("geography", CITY_STATE),
)
DATE_VALUE = re.compile(
    r"\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?)?"
    r"|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}( \d{1,2}:\d{2}(:\d{2})?( ?[AP]M)?)?"
    r"|\d{4}/\d{1,2}/\d{1,2}"
    r"|(\d{1,2} )?(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
    r"( \d{1,2},?)? \d{4}",
    re.IGNORECASE,
)
# Person names as exports write them: "Amy Young", "YOUNG, AMY", "Young, Amy J",
# "Dr. Steven Burton", "Burton, Steven MD", "Steven Burton, RN", "John Smith Jr."
_NAME_WORD = r"(?:[A-Z][a-z'’-]+(?:[A-Z][a-z'’-]+)?|[A-Z][A-Z'’-]+)"
_INITIAL = r"[A-Z]\.?"
_CREDENTIALS = (
    r"(?:,? (?:MD|M\.D\.|DO|D\.O\.|RN|NP|PA|PA-C|PhD|DDS|DMD|DPM|APRN|CNM|CRNA|LPN|"
    r"FACP|FACS|MBBS|PharmD|Jr\.?|Sr\.?|II|III|IV))*"
)
_PERSON_NAME = re.compile(
    rf"(?:(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof)\.? )?{_NAME_WORD}(?: (?:{_NAME_WORD}|{_INITIAL})){{0,2}}"
    rf" {_NAME_WORD}{_CREDENTIALS}"
    rf"|{_NAME_WORD}(?: {_NAME_WORD})?, ?{_NAME_WORD}"
    rf"(?: (?:{_NAME_WORD}|{_INITIAL}))?{_CREDENTIALS}"
)
# Record numbers by content alone: letters with digits ("MRN0012345", "AB-99812"), digit
# groups joined by - or _ ("123-45678"). All-digit values only with leading zeros or a
# fixed width of 8 or more: 6-digit platelet counts are measurements, not identifiers.
_RECORD_ID = re.compile(r"[A-Za-z]{1,5}[-_ ]?\d{4,}[A-Za-z0-9-]*|\d{3,}(?:[-_]\d{3,})+")
_ALL_DIGITS = re.compile(r"\d+")


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


def detect_column(column: object, values: pd.Series) -> Detection:
    """The kind of one column; ``"none"`` for what Safe Harbor lets through unchanged."""
    by_name = kind_from_name(column)
    if by_name is None and _PERSON_ROLE.fullmatch(normalise_name(column)):
        by_name = "record_id" if _person_role_holds_ids(values) else "name"
    if by_name == "text" and (
        pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
    ):
        by_name = None  # a "notes" column of numbers or flags holds no text to scrub
    if by_name is not None:
        return Detection(str(column), by_name, "name")
    if pd.api.types.is_datetime64_any_dtype(values):
        return Detection(str(column), "date", "type")
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return Detection(str(column), "none", None)
    by_content = kind_from_content(values)
    return Detection(str(column), by_content or "none", "content" if by_content else None)


def kind_from_content(values: pd.Series) -> str | None:
    """The kind the values look like; a column mixing direct identifiers (e-mails and
    phones in one "contact" column) is that mix's most common kind when together they
    make up the share that one kind alone would need."""
    sample = _sample(values)
    if sample.empty:
        return None
    distinct = sample.nunique() / len(sample)
    direct = Counter(
        kind for kind in (_direct_kind(value, names=distinct >= 0.5) for value in sample) if kind
    )
    if direct and sum(direct.values()) / len(sample) >= CONTENT_SHARE:
        return direct.most_common(1)[0][0]
    if _share(sample, DATE_VALUE.fullmatch) >= DATE_SHARE:
        return "date"
    if distinct >= 0.5 and _looks_like_record_ids(sample):
        return "record_id"
    if _looks_like_text(values, min_words=6, min_chars=40):
        return "text"
    return None


def _direct_kind(value: str, *, names: bool) -> str | None:
    """The direct-identifier kind one value has, if any (the first rule that matches)."""
    for kind, pattern in _CONTENT_RULES:
        if pattern.fullmatch(value):
            return kind
    if _is_ip(value):
        return "ip"
    if names and _PERSON_NAME.fullmatch(value):
        return "name"
    return None


def _looks_like_record_ids(sample: pd.Series) -> bool:
    """Identifier-shaped values, not plain measurement numbers (see ``_RECORD_ID``)."""
    digits = sample[sample.map(lambda value: _ALL_DIGITS.fullmatch(value) is not None)]
    widths = digits.str.len()
    numbered = bool(
        len(digits)
        and widths.min() >= 6
        and ((digits.str.startswith("0").any()) or (widths.nunique() == 1 and widths.min() >= 8))
    )
    shaped = _share(sample, _RECORD_ID.fullmatch)
    return shaped + (len(digits) / len(sample) if numbered else 0.0) >= CONTENT_SHARE


def _person_role_holds_ids(values: pd.Series) -> bool:
    """A "Patient" column of numbers or record numbers links records: a record id."""
    if pd.api.types.is_numeric_dtype(values):
        return True
    sample = _sample(values)
    return bool(len(sample)) and (
        _looks_like_record_ids(sample)
        or _share(sample, lambda value: _ALL_DIGITS.fullmatch(value) is not None) >= CONTENT_SHARE
    )


def detect_columns(frame: pd.DataFrame) -> dict[str, Detection]:
    return {str(c): detect_column(c, frame[c]) for c in frame.columns}


def _sample(values: pd.Series) -> pd.Series:
    present = values.dropna()
    return present.iloc[:SAMPLE_SIZE].astype(str).str.strip()


def _share(sample: pd.Series, test: object) -> float:
    return float(sum(1 for value in sample if test(value))) / len(sample)  # type: ignore[operator]


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _looks_like_text(values: pd.Series, *, min_words: int, min_chars: int = 0) -> bool:
    if pd.api.types.is_numeric_dtype(values):
        return False
    sample = _sample(values)
    if sample.empty:
        return False
    words = sample.str.split().str.len().mean()
    return bool(words >= min_words and sample.str.len().mean() >= min_chars)

"""Which columns hold identifiers: by the column's name first, then by its content.

Kinds follow the HIPAA Safe Harbor list of 18 identifiers (45 CFR 164.514(b)(2)) plus
the quasi-identifiers that stay in a Safe Harbor table (sex, race) and free text.
Detection never returns or logs a value, only the kind and how it was found.
"""

from __future__ import annotations

import ipaddress
import re
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
        ("geography", r"(^|_)(city|county|town|precinct|municipality|neighbou?rhood)($|_)"),
        (
            "birth_date",
            r"(^|_)(dob|birthdate|birthday|date_of_birth|birth_date|born_on)($|_)|^birth$",
        ),
        ("age", r"(^|_)age(_years|_yrs|_y|_at_[a-z_]+)?$"),
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
            r"(^|_)(note|notes|comment|comments|narrative|free_text|text|hpi|impression|"
            r"findings|discharge_summary|clinical_summary)($|_)",
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
)
DATE_VALUE = re.compile(
    r"\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?)?"
    r"|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}( \d{1,2}:\d{2}(:\d{2})?( ?[AP]M)?)?"
    r"|\d{4}/\d{1,2}/\d{1,2}"
    r"|(\d{1,2} )?(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
    r"( \d{1,2},?)? \d{4}",
    re.IGNORECASE,
)
_PERSON_NAME = re.compile(r"([A-Z][a-z'’-]+\.? ){1,3}[A-Z][a-z'’-]+|[A-Z][a-z'’-]+, [A-Z][a-z'’-]+")
_RECORD_ID = re.compile(r"[A-Za-z]{1,5}[-_ ]?\d{4,}[A-Za-z0-9-]*|\d{6,}")


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
    if by_name == "text" and not _looks_like_text(values, min_words=3):
        by_name = None  # a "notes" column of codes or flags is not free text
    if by_name is not None:
        return Detection(str(column), by_name, "name")
    if pd.api.types.is_datetime64_any_dtype(values):
        return Detection(str(column), "date", "type")
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return Detection(str(column), "none", None)
    by_content = kind_from_content(values)
    return Detection(str(column), by_content or "none", "content" if by_content else None)


def kind_from_content(values: pd.Series) -> str | None:
    sample = _sample(values)
    if sample.empty:
        return None
    for kind, pattern in _CONTENT_RULES:
        if _share(sample, pattern.fullmatch) >= CONTENT_SHARE:
            return kind
    if _share(sample, _is_ip) >= CONTENT_SHARE:
        return "ip"
    if _share(sample, DATE_VALUE.fullmatch) >= DATE_SHARE:
        return "date"
    distinct = sample.nunique() / len(sample)
    if distinct >= 0.5 and _share(sample, _RECORD_ID.fullmatch) >= CONTENT_SHARE:
        return "record_id"
    if _looks_like_text(values, min_words=6, min_chars=40):
        return "text"
    if distinct >= 0.5 and _share(sample, _PERSON_NAME.fullmatch) >= CONTENT_SHARE:
        return "name"
    return None


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

"""What one value looks like: the shapes of identifiers, shared by column detection, the
review of kept columns and the notes scrubber.

Letters are Unicode throughout (``Zoë Ångström``, ``MÜLLER``): the classes below hold
every upper- and lower-case letter below U+2000 (Latin, Greek, Cyrillic, Armenian, …);
scripts without capitals have no capitalised names to find. No function here returns or
logs a value, only a kind.
"""

from __future__ import annotations

import ipaddress
import re


def _letter_class(test: str) -> str:
    """Every letter below U+2000 for which ``str.<test>()`` holds, as a character class."""
    ranges: list[list[int]] = []
    for code in range(0x2000):
        if getattr(chr(code), test)():
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    parts = (
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
        for a, b in ranges
    )
    return "[" + "".join(parts) + "]"


UPPER = _letter_class("isupper")
LOWER = _letter_class("islower")
LETTER = r"[^\W\d_]"
# A capitalised word of a name: "Zoë", "O'Brien", "Ångström-Lee", "McDonald".
NAME_WORD = rf"{UPPER}(?:{LETTER}|['’-](?={LETTER}))+"

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
_ADDRESS = (
    rf"\b\d{{1,6}}(?:\s+[A-Z][A-Za-z'.-]*){{1,4}}\s+(?i:{_STREET_SUFFIXES})\b\.?"
    r"(?i:,?\s+(?:apt|apartment|suite|ste|unit|#)\.?\s*#?\s*[\w-]+)?"
    # military addresses, which Faker and real exports both contain
    r"|\b(?:PSC|Unit|USNS|USNV|USS|USCGC)\s+[\w ]{1,30}?,?\s+Box\s+\d+"
    r"|\b(?:USNS|USNV|USS|USCGC)\s+[A-Z][a-z]+"
)
# In notes, in any case ("lives at 12 oak street"); a column's value needs the street's
# name capitalised, so that "30 min walk" or "10 mg at rest" is no address.
STREET_ADDRESS = re.compile(_ADDRESS, re.IGNORECASE)
_STREET_ADDRESS_VALUE = re.compile(rf"(?:{_ADDRESS}).*", re.DOTALL)

# A vehicle identification number: 17 characters without I, O or Q, letters and digits
# both (the check digit in position 9 is not verified: many exports carry older VINs).
VIN = re.compile(r"(?=[A-HJ-NPR-Z0-9]{17}$)(?=.*[A-Z])(?=.*\d)[A-HJ-NPR-Z0-9]{17}")
US_STATE_CODES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|"
    "NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|"
    "AS|GU|MP|PR|VI|FM|MH|PW|AA|AE|AP"
)
# "Mariaborough, NV", "St. Louis, MO 63101": a city is smaller than a state.
_PLACE_CHARS = rf"(?:{LETTER}|[.'’-])"
CITY_STATE = re.compile(
    rf"{UPPER}{_PLACE_CHARS}*(?: {_PLACE_CHARS}+){{0,3}}, (?:{US_STATE_CODES})"
    r"(?: \d{5}(?:-\d{4})?)?"
)
# Identifiers whose shape alone gives them away, whatever the column is called.
STRONG_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
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
    ("street_address", _STREET_ADDRESS_VALUE),
    ("vehicle_id", VIN),
    ("geography", CITY_STATE),
    ("zip", re.compile(r"\d{5}-\d{4}")),  # ZIP+4; five digits alone could be a count
)
# Month names in full or abbreviated, nothing longer ("Decadron 4" is no date).
_MONTH_NAME = (
    r"(jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|june?|july?|aug(ust)?|"
    r"sep(t(ember)?)?|oct(ober)?|nov(ember)?|dec(ember)?)\.?"
)
DATE_VALUE = re.compile(
    r"\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?)?"
    r"|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}( \d{1,2}:\d{2}(:\d{2})?( ?[AP]M)?)?"
    r"|\d{4}/\d{1,2}/\d{1,2}"
    rf"|(\d{{1,2}} )?{_MONTH_NAME}( \d{{1,2}},?)? \d{{4}}",
    re.IGNORECASE,
)
# "Mar 3", "March 3rd", "3 Mar": a month and a day without a year (a date all the same).
MONTH_DAY_VALUE = re.compile(
    rf"{_MONTH_NAME} ?\d{{1,2}}(st|nd|rd|th)?|\d{{1,2}}(st|nd|rd|th)? {_MONTH_NAME}",
    re.IGNORECASE,
)
# Ages written with their unit: "93 yo", "93y", "93 years", "93 y/o", "93-year-old".
AGE_VALUE = re.compile(
    r"(?P<years>\d{1,3}(?:\.\d+)?)\s*-?\s*(?:y|yo|y/o|yr|yrs|years?|years?[- ]old|yoa)\.?",
    re.IGNORECASE,
)
_NAME_WORD_CAPS = rf"{UPPER}(?:{UPPER}|['’-](?={UPPER}))+"
_ANY_NAME_WORD = rf"(?:{NAME_WORD}|{_NAME_WORD_CAPS})"
_INITIAL = rf"{UPPER}\.?"
_CREDENTIALS = (
    r"(?:,? (?:MD|M\.D\.|DO|D\.O\.|RN|NP|PA|PA-C|PhD|DDS|DMD|DPM|APRN|CNM|CRNA|LPN|"
    r"FACP|FACS|MBBS|PharmD|Jr\.?|Sr\.?|II|III|IV))*"
)
# Person names as exports write them: "Amy Young", "YOUNG, AMY", "Young, Amy J",
# "Dr. Steven Burton", "Burton, Steven MD", "Steven Burton, RN", "Zoë Ångström".
PERSON_NAME = re.compile(
    rf"(?:(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof)\.? )?{_ANY_NAME_WORD}(?: (?:{_ANY_NAME_WORD}|{_INITIAL}))"
    rf"{{0,2}} {_ANY_NAME_WORD}{_CREDENTIALS}"
    rf"|{_ANY_NAME_WORD}(?: {_ANY_NAME_WORD})?, ?{_ANY_NAME_WORD}"
    rf"(?: (?:{_ANY_NAME_WORD}|{_INITIAL}))?{_CREDENTIALS}"
)
# Record numbers: letters with digits ("MRN0012345", "AB-99812"), digit groups joined by -
# or _ ("123-45678"). All-digit values only with leading zeros or a fixed width of 8 or
# more: 6-digit platelet counts are measurements, not identifiers.
RECORD_ID = re.compile(r"[A-Za-z]{1,5}[-_ ]?\d{4,}[A-Za-z0-9-]*|\d{3,}(?:[-_]\d{3,})+")
ALL_DIGITS = re.compile(r"\d+")
# What medserve writes for a pseudonymised value ("P-7f60…"): already de-identified.
PSEUDONYM = re.compile(r"[A-Z]-[0-9a-f]{16}")


def strong_kind(value: str) -> str | None:
    """The identifier kind a value has by its shape alone (phone, SSN, e-mail, …), if any."""
    for kind, pattern in STRONG_RULES:
        if pattern.fullmatch(value):
            return kind
    return "ip" if is_ip(value) else None


def is_date(value: str) -> bool:
    """A date as exports write one, with or without its year ("2021-03-14", "Mar 3")."""
    return bool(DATE_VALUE.fullmatch(value) or MONTH_DAY_VALUE.fullmatch(value))


def is_ssn_digits(value: str) -> bool:
    """Nine digits that are a valid SSN: area not 000, 666 or 9xx; group and serial not 0."""
    return (
        len(value) == 9
        and value.isdigit()
        and value[:3] not in ("000", "666")
        and value[0] != "9"
        and value[3:5] != "00"
        and value[5:] != "0000"
    )


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True

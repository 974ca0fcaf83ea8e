"""Scrubbing identifiers out of free-text notes, with typed placeholders.

No named-entity model can be installed here (the spaCy models Presidio needs are not
on PyPI), so this is a rule-based scrubber in three layers:

1. identifier values from the note's own row (the patient's and relatives' names in any
   case, record number, phone, address, dates … taken from the table's identifier
   columns);
2. names from every row's name columns, in any script, wherever they appear capitalised
   or in capitals, and whole in lower case (``names.py``);
3. regular expressions for what has a shape: e-mail and web addresses, IP addresses,
   SSNs, phone and fax numbers, dates, street addresses, ZIP codes, labelled record
   numbers, long id-like numbers, names after a title or a relation ("Dr.", "wife"),
   and ages over 89 (→ ``90+``).

What it misses: names that are in no column and have no title or relation before
them, places other than street addresses, and identifiers written in unusual shapes.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable

import pandas as pd

from medserve.deid.names import EPONYM_AFTER, KnownNames, name_parts
from medserve.deid.shapes import NAME_WORD, STREET_ADDRESS

ENGINE = (
    "rules: identifier values from the same row, names from the table's name columns, and "
    "regular expressions (no named-entity model)"
)
PLACEHOLDER = {
    "name": "[NAME]",
    "record_id": "[ID]",
    "licence_id": "[ID]",
    "vehicle_id": "[ID]",
    "device_id": "[ID]",
    "ssn": "[SSN]",
    "phone": "[PHONE]",
    "fax": "[FAX]",
    "email": "[EMAIL]",
    "url": "[URL]",
    "ip": "[IP]",
    "street_address": "[ADDRESS]",
    "geography": "[LOCATION]",
    "zip": "[ZIP]",
    "birth_date": "[DATE]",
    "date": "[DATE]",
}
ROW_KINDS = frozenset(PLACEHOLDER)
# Capitalised words that follow "patient", "name", "contact" … in notes without being names.
_NOT_AFTER_RELATION = frozenset(
    "name names id number record records information education instructions history "
    "reports report denies states stated presents presented admitted is was has had care "
    "portal consent notes note refused declined agrees agreed understands tolerated "
    "returned arrived left seen".split()
)

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:1[89]\d\d|20\d\d)"
_NAME_WORD = NAME_WORD
# Words before a person's name: relatives, guardians and household members (Safe Harbor
# names them too), and labels.
_RELATION = (
    r"(?:wife|husband|son|daughter|mother|father|brother|sister|spouse|partner|friend|"
    r"caregiver|carer|neighbou?r|aunt|uncle|niece|nephew|cousin|grandson|granddaughter|"
    r"grandmother|grandfather|grandparent|grandchild|stepmother|stepfather|stepson|"
    r"stepdaughter|sibling|parent|child|guardian|relative|kin|next of kin|fianc[eé]e?|"
    r"girlfriend|boyfriend|roommate|housemate|landlord|landlady|employer|proxy|surrogate|"
    r"guarantor|poa|emergency contact|"
    r"patient|pt|named|name:?|contact:?|NOK:?)"
)

# (placeholder kind, pattern, group to replace or 0 for the whole match), applied in order.
_RULES: tuple[tuple[str, re.Pattern[str], int], ...] = (
    ("email", re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+"), 0),
    ("url", re.compile(r"\b(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)]", re.I), 0),
    (
        "ip",
        re.compile(
            r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b",
        ),
        0,
    ),
    ("ssn", re.compile(r"\b\d{3}([- .])\d{2}\1\d{4}\b"), 0),  # 123-45-6789, 123 45 6789
    (
        "ssn",
        re.compile(r"(?i:\b(?:ssn|social security(?: number| no\.?)?)\s*[:#]?\s*)(\d{9})\b"),
        1,
    ),
    (
        "date",
        re.compile(
            rf"\b{_YEAR}([-/.])\d{{1,2}}\1\d{{1,2}}(?:[ T]\d{{1,2}}:\d{{2}}(?::\d{{2}})?)?\b"
            rf"|\b\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:{_YEAR}|\d\d)\b"
            rf"|\b{_DAY}[-/]{_MONTH}[-/](?:{_YEAR}|\d\d)\b"  # 14-Mar-2021, 14/Mar/21
            rf"|\b{_MONTH}[-/]{_DAY}[-/](?:{_YEAR}|\d\d)\b"  # Mar-14-2021
            rf"|\b{_DAY}(?: of)? {_MONTH},? {_YEAR}\b"
            rf"|\b{_MONTH} {_DAY},? {_YEAR}\b"
            rf"|\b{_MONTH} {_DAY}\b(?!\s*(?:mg|ml|units?|%))"
            rf"|\b{_MONTH}(?:,? |[-/]){_YEAR}\b"
            rf"|\b\d{{1,2}}/{_YEAR}\b"
        ),
        0,
    ),
    (  # "Born 1931", "DOB: 1931", "year of birth 1931": a birth year can mean an age over 89
        "birth_date",
        re.compile(
            r"(?i:\b(?:born|b\.|dob|d\.o\.b\.?|date of birth|birth ?year|year of birth|yob)"
            rf"\s*(?:in|on)?\s*[:#]?\s*)({_YEAR})\b"
        ),
        1,
    ),
    (
        "fax",
        re.compile(
            r"(?i:\bfax(?:\s*(?:no\.?|number|#))?\s*[:#]?\s*)"
            r"((?:\+?0*1[-.\s]?)?\(?\d{3}\)?[-.\s]?\d{3}[-.\s]?\d{4}(?:\s*(?:x|ext\.?)\s*\d{1,5})?)"
        ),
        1,
    ),
    (
        "phone",
        re.compile(
            r"(?<![\w-])(?:\+?0*1[-.\s]?)?(?:\(\d{3}\)\s?|\d{3}[-.\s])\d{3}[-.\s]\d{4}"
            r"(?:\s*(?:x|ext\.?)\s*\d{1,5})?\b",
            re.IGNORECASE,
        ),
        0,
    ),
    (
        "phone",
        re.compile(
            r"(?i:\b(?:phone|tel|telephone|call|cell|mobile|contact|pager)\b[^\d\n]{0,12})"
            r"(\d{10})\b"
        ),
        1,
    ),
    ("street_address", STREET_ADDRESS, 0),
    (
        "street_address",
        re.compile(rf"\b(?:{_NAME_WORD} ){{0,3}}{_NAME_WORD}, [A-Z]{{2}} \d{{5}}(?:-\d{{4}})?\b"),
        0,
    ),
    ("zip", re.compile(r"(?<=\b[A-Z]{2} )\d{5}(?:-\d{4})?\b"), 0),
    ("zip", re.compile(r"(?i:\b(?:zip|zip code|postal code)\s*[:#]?\s*)(\d{5}(?:-\d{4})?)\b"), 1),
    (  # a vehicle identification number: 17 characters without I, O, Q
        "vehicle_id",
        re.compile(r"\b(?=[A-HJ-NPR-Z\d]*[A-HJ-NPR-Z])(?=[A-HJ-NPR-Z]*\d)[A-HJ-NPR-Z\d]{17}\b"),
        0,
    ),
    (
        "record_id",
        re.compile(
            r"(?i:\b(?:mrn|medical record(?: number| no\.?)?|record(?: number| no\.?| #)|"
            r"acct|account(?: number| no\.?)?|patient id|pt id|id|member id|"
            r"policy(?: number| no\.?)|licen[cs]e(?: number| no\.?)?|npi|vin|"
            r"serial(?: number| no\.?)?)\s*[:#]?\s*)"
            r"((?=[A-Za-z0-9-]*\d)[A-Za-z0-9][A-Za-z0-9-]{3,})"
        ),
        1,
    ),
    ("record_id", re.compile(r"\b[A-Za-z]{1,5}-?\d{4,}[A-Za-z0-9]*\b|\b\d{7,}\b"), 0),
)
# IPv6 in any notation ("2001:db8::1", "fe80::1%"): candidates, kept only if they parse.
_IPV6_CANDIDATE = re.compile(
    r"(?<![\w:.])(?=[0-9a-fA-F:]*\d)(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![\w:])"
)
# A month and day without a year ("seen again 3/25"), unless a score or fraction is meant:
# "5/5 strength", "pain 7/10", "2/6 murmur", "1/2 tab", "2/2 blood cultures".
_MONTH_DAY = re.compile(r"(?<![\w/.])(?:1[0-2]|0?[1-9])/(?:3[01]|[12]\d|0?[1-9])(?![\w/]|\.\d)")
_SCORE_AFTER = re.compile(
    r"\s*(?:\+|[x×]\b|%|(?i:strength|motor|power|murmur|systolic|diastolic|holosystolic|pain|"
    r"pulses?|reflex(?:es)?|dtrs?|tabs?|tablets?|caps?|capsules?|pills?|mg|mcg|ml|units?|doses?|"
    r"scale|score|of\b|blood|cultures?|bottles?|sets?|times|days?|weeks?|hours?|hrs?)\b)"
)
_SCORE_BEFORE = re.compile(
    r"(?i:pain|strength|power|motor|murmur|grade[ds]?|score[ds]?|scale|rated?|ratio|gcs|"
    r"apgars?|reflex(?:es)?|dtrs?|pulses?|cultures?|x)\s*(?:of|is|was|at|to|:|=)?\s*$"
)
_OLD_AGE = re.compile(r"\b(?:9\d|1[0-4]\d)(?=(?:\s|-)*(?:years?|yrs?|y/?o|year-old|yo)\b)")
# (?!\+): "aged 90+" is grouped already, so a second pass leaves it as it is.
_AGE_AFTER_WORD = re.compile(r"(?i:\b(aged?|age:)\s+)(9\d|1[0-4]\d)\b(?!\+)")
_TITLED_NAME = re.compile(
    rf"(?:\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?\s+)({_NAME_WORD}(?:\s+{_NAME_WORD})?)"
)
_RELATION_NAME = re.compile(
    rf"(?i:\b{_RELATION}\s+)({_NAME_WORD}(?:\s+{_NAME_WORD})?)",
)


class NoteScrubber:
    """Scrubs the notes of one table. Built once per table, applied row by row.

    ``names`` are the casefolded name parts from the table's name columns (or the
    ``KnownNames`` of a table); ``lowercase_words`` the words the notes use in lower case.
    A name part that is also such a word ("white", "rose") is replaced only beside another
    name, or after a title or a relation ("Dr.", "wife").
    """

    def __init__(self, names: Iterable[str] | KnownNames, lowercase_words: Iterable[str] = ()):
        known = names if isinstance(names, KnownNames) else KnownNames(names, lowercase_words)
        self.known = known

    @classmethod
    def for_table(
        cls, frame: pd.DataFrame, name_columns: list[str], text_columns: list[str]
    ) -> NoteScrubber:
        return cls(KnownNames.for_table(frame, name_columns, text_columns))

    def scrub(self, note: str, row_values: list[tuple[str, str]]) -> tuple[str, Counter[str]]:
        """``note`` with identifiers replaced; counts by placeholder (never the values)."""
        counts: Counter[str] = Counter()
        note = self._replace_row_values(note, row_values, counts)
        for kind, pattern, group in _RULES:
            note = _substitute(note, pattern, group, PLACEHOLDER[kind], counts)
        note = _substitute(note, _IPV6_CANDIDATE, 0, "[IP]", counts, keep=_not_ipv6)
        note = _substitute(note, _MONTH_DAY, 0, "[DATE]", counts, keep=_is_score)
        note = _substitute(note, _AGE_AFTER_WORD, 2, "90+", counts, label="AGE 90+")
        note = _substitute(note, _OLD_AGE, 0, "90+", counts, label="AGE 90+")
        note = _substitute(note, _TITLED_NAME, 1, "[NAME]", counts)
        note = _substitute(note, _RELATION_NAME, 1, "[NAME]", counts, keep=self._plain_word)
        return self.known.replace(note, counts), counts

    def _plain_word(self, match: re.Match[str]) -> bool:
        """'patient Reports …': a word the notes also use in lower case is no name."""
        first = match.group(1).split()[0].casefold()
        if first in _NOT_AFTER_RELATION:
            return True
        return first in self.known.lowercase_words and first not in self.known.names

    def _replace_row_values(
        self, note: str, values: list[tuple[str, str]], counts: Counter[str]
    ) -> str:
        """The row's own identifiers, wherever the note writes them; names in any case."""
        if not values:
            return note
        placeholder_of: dict[str, str] = {}
        names: set[str] = set()
        others: set[str] = set()
        for kind, text in values:
            if kind == "name":  # "rose tyler" and "ROSE", never "rose" (the verb) alone
                names |= self.known.row_forms(text)
            else:
                others.add(text)
            placeholder_of.setdefault(text.casefold(), PLACEHOLDER[kind])
        alternatives = []
        if others:
            alternatives.append(f"(?i:{_alternation(others)})")
        if names:  # not "Graves" in "Graves disease"
            alternatives.append(f"(?:{_alternation(names)})(?!{EPONYM_AFTER.pattern})")
        pattern = re.compile(rf"(?<![\w@.])(?:{'|'.join(alternatives)})(?![\w@])")

        def replace(match: re.Match[str]) -> str:
            placeholder = placeholder_of.get(match.group(0).casefold(), "[ID]")
            counts[placeholder] += 1
            return placeholder

        return pattern.sub(replace, note)


def _not_ipv6(match: re.Match[str]) -> bool:
    try:
        ipaddress.IPv6Address(match.group(0))
    except ValueError:
        return True
    return False


def _is_score(match: re.Match[str]) -> bool:
    """'5/5 strength', 'pain 7/10': a score or fraction, not a month and day."""
    before = match.string[max(0, match.start() - 20) : match.start()]
    return bool(_SCORE_AFTER.match(match.string, match.end()) or _SCORE_BEFORE.search(before))


def row_values(row: dict[str, object], kinds: dict[str, str]) -> list[tuple[str, str]]:
    """``(kind, text)`` for each identifier value in one row, as notes may write it."""
    values: list[tuple[str, str]] = []
    for column, kind in kinds.items():
        value = row.get(column)
        if value is None or (isinstance(value, float) and pd.isna(value)):
            continue
        if isinstance(value, pd.Timestamp):
            text = value.strftime("%Y-%m-%d")
        elif isinstance(value, float) and value.is_integer():
            text = str(int(value))
        else:
            text = str(value).strip()
        if len(text) < 2:
            continue
        values.append((kind, text))
        if kind == "name":
            values += [(kind, part) for part in name_parts(text)]
        elif kind == "street_address":
            values += [(kind, line.strip()) for line in re.split(r"[\n,]", text) if line.strip()]
        elif kind in ("ssn", "phone", "fax", "record_id"):
            digits = re.sub(r"\D", "", text)
            if len(digits) >= 5 and digits != text:
                values.append((kind, digits))
    return [(kind, text) for kind, text in values if len(text) >= 2]


def _alternation(texts: set[str]) -> str:
    return "|".join(re.escape(text) for text in sorted(texts, key=len, reverse=True))


def _substitute(
    note: str,
    pattern: re.Pattern[str],
    group: int,
    placeholder: str,
    counts: Counter[str],
    *,
    label: str | None = None,
    keep: Callable[[re.Match[str]], bool] | None = None,
) -> str:
    def replace(match: re.Match[str]) -> str:
        if keep is not None and keep(match):
            return match.group(0)
        counts[label or placeholder] += 1
        if group == 0:
            return placeholder
        start, end = match.span(group)
        whole = match.group(0)
        offset = match.start()
        return whole[: start - offset] + placeholder + whole[end - offset :]

    return pattern.sub(replace, note)

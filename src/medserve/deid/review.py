"""Which kept columns a person should look at before a table counts as Safe Harbor.

Detection decides what to do with a column; this looks again at every column that stays
as it was, over all its values, and flags it when any value looks like an identifier, or
when it holds strings that no rule classified (names by their shape, free text). Notes
scrubbed by rules are flagged too: rules are not a guarantee. A flag makes the report say
``safe_harbor: false``; a policy ``keep`` for a column says a person classified its strings
(it never clears values that look like identifiers).
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from medserve.deid.detect import CONTENT_SHARE, NAME_SHARE, VARIED_SHARE, follows_patients
from medserve.deid.report import ColumnOutcome, ReviewFlag
from medserve.deid.shapes import PERSON_NAME, is_date, is_ssn_digits, strong_kind

# Kinds Safe Harbor lets through unchanged; keeping any other kind breaks it.
SAFE_HARBOR_KEEPS = frozenset({"none", "sex", "race"})
# More distinct strings than this (or one for about every other row) are not levels.
FREE_TEXT_LEVELS = 50
_DESCRIBED = {
    "ssn": "SSNs",
    "phone": "phone numbers",
    "email": "e-mail addresses",
    "url": "web addresses",
    "ip": "IP addresses",
    "street_address": "street addresses",
    "vehicle_id": "vehicle numbers",
    "geography": "places smaller than a state",
    "zip": "ZIP codes",
    "date": "dates",
    "record_id": "SSNs, phone or record numbers",
}
_FIX = "drop it with 'columns: {COLUMN: drop}' in the policy, or remove the values"


def review_column(
    outcome: ColumnOutcome,
    values: pd.Series,
    *,
    classified: bool,
    patients: pd.Series | None = None,
) -> ReviewFlag | None:
    """The reason a person should look at one column of the output, or None.

    ``values`` are the column as written; ``classified`` says the policy names the column
    (a person has looked at its strings); ``patients``, the patient of each row when the
    table says, tells names (one per patient) from levels that change between visits.
    """
    present = values.dropna()
    if outcome.kind == "text" and outcome.action == "generalise":
        return _flag(
            outcome.column,
            "scrubbed_text",
            None,
            outcome.changed,
            len(present),
            "free text scrubbed by rules, without a named-entity model: review a sample of "
            "the notes before relying on them, or drop the column",
        )
    if outcome.action != "keep" or outcome.kind not in SAFE_HARBOR_KEEPS or present.empty:
        return None
    if pd.api.types.is_bool_dtype(present):
        return None
    if pd.api.types.is_numeric_dtype(present):
        return _long_integers(outcome.column, present)
    counts = present.astype(str).str.strip().value_counts()
    looks = Counter()
    for text, count in counts.items():
        kind = _identifier_kind(str(text))
        if kind is not None:
            looks[kind] += int(count)
    if looks:
        kind, _ = looks.most_common(1)[0]
        return _flag(
            outcome.column,
            "identifier_values",
            kind,
            sum(looks.values()),
            len(present),
            f"{sum(looks.values())} of {len(present)} values look like {_DESCRIBED[kind]}; {_FIX}",
        )
    if classified or outcome.kind != "none":
        return None
    names_possible = patients is None or follows_patients(present, patients)
    return _unclassified(outcome.column, counts, len(present), names=names_possible)


def _identifier_kind(text: str) -> str | None:
    kind = strong_kind(text)
    if kind is not None:
        return kind
    if is_date(text):
        return "date"
    return "ssn" if is_ssn_digits(text) else None


def _unclassified(
    column: str, counts: pd.Series, present: int, *, names: bool
) -> ReviewFlag | None:
    """Strings that are neither numbers nor codes nor a few levels: names or free text."""
    texts = pd.Series(counts.index.astype(str), index=counts.index)
    numbers = pd.to_numeric(texts, errors="coerce").notna().to_numpy()
    codes = (~texts.str.contains(r"\s") & texts.str.contains(r"\d")).to_numpy()
    words = counts[~numbers & ~codes]
    if words.empty:
        return None
    named = [PERSON_NAME.fullmatch(str(text)) is not None for text in words.index]
    name_like = int(words[named].sum()) if names else 0
    keep = f"if it holds no identifier, say so with 'columns: {{{column}: keep}}' in the policy"
    if name_like and name_like >= NAME_SHARE * present:
        return _flag(
            column,
            "name_like_values",
            "name",
            name_like,
            present,
            f"{name_like} of {present} values are written like person names; {keep}",
        )
    distinct = len(words)
    if distinct >= FREE_TEXT_LEVELS or (distinct >= 10 and distinct >= VARIED_SHARE * present):
        return _flag(
            column,
            "free_text",
            None,
            int(words.sum()),
            present,
            f"{distinct} different strings that no rule classified; {keep}",
        )
    return None


def _long_integers(column: str, present: pd.Series) -> ReviewFlag | None:
    """Whole numbers of nine digits or more: SSNs, phone or record numbers, not amounts."""
    numbers = pd.to_numeric(present, errors="coerce")
    whole = numbers[(numbers == numbers.round()) & (numbers.abs() >= 100_000_000)]
    if len(whole) < CONTENT_SHARE * len(present):
        return None
    return _flag(
        column,
        "identifier_values",
        "record_id",
        len(whole),
        len(present),
        f"{len(whole)} of {len(present)} values are whole numbers of nine digits or more, "
        f"like {_DESCRIBED['record_id']}; {_FIX}",
    )


def _flag(
    column: str, reason: str, kind: str | None, values: int, present: int, message: str
) -> ReviewFlag:
    return ReviewFlag(
        column=column,
        reason=reason,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        values=values,
        present=present,
        message=message.replace("COLUMN", column),
    )

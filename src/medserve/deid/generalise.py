"""Safe Harbor generalisations of ages and ZIP codes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medserve.deid.shapes import AGE_VALUE
from medserve.errors import DataError

TOP_AGE = "90+"
OLDEST_GROUPED_AGE = 90  # whole years: 89.5 is an age of 89
# Three-digit ZIP prefixes whose areas hold 20,000 people or fewer (2000 Census, as the
# HHS Safe Harbor guidance lists them): they become "000".
RESTRICTED_ZIP3 = frozenset(
    {
        "036", "059", "063", "102", "203", "556", "692", "790", "821",
        "823", "830", "831", "878", "879", "884", "890", "893",
    }
)  # fmt: skip


def generalise_ages(values: pd.Series, column: str) -> tuple[pd.Series, int]:
    """Ages of 90 or more → ``"90+"``; others as written. Returns the column and how many changed.

    Safe Harbor groups "all ages over 89": ages are counted in whole years, so 89.5 is
    89 and stays; 90 and above are grouped. ``"90+"`` is accepted as already grouped, so
    a de-identified table can go through again. Ages written with a unit ("93 yo",
    "93 years") are read as their number.
    """
    numbers = pd.to_numeric(values, errors="coerce").fillna(_years_with_unit(values))
    grouped = values.notna() & values.astype(str).str.strip().eq(TOP_AGE)
    _first_bad(values.notna() & numbers.isna() & ~grouped, column, "is not an age in years")
    over = numbers >= OLDEST_GROUPED_AGE
    out = values.astype(object).where(values.notna(), None)
    if not pd.api.types.is_object_dtype(values) and not pd.api.types.is_string_dtype(values):
        # numbers from Parquet: one text column, "63" and "90+", not a mix of types
        out = numbers.map(lambda age: None if pd.isna(age) else f"{age:g}").astype(object)
    out[over | grouped] = TOP_AGE
    return out, int(over.sum())


def _years_with_unit(values: pd.Series) -> pd.Series:
    """The number of years in "93 yo", "93 years"; missing for anything else."""

    def years(value: object) -> str | None:
        match = AGE_VALUE.fullmatch(value.strip()) if isinstance(value, str) else None
        return match.group("years") if match else None

    return pd.to_numeric(values.map(years).astype(object), errors="coerce")


def zip3(values: pd.Series, column: str) -> tuple[pd.Series, int, int]:
    """ZIP or ZIP+4 → its first three digits, or ``"000"`` in a restricted area.

    Returns the column, how many values changed and how many were restricted areas.
    A ZIP read as a number (``2134`` for ``02134``) gets its leading zeros back first.
    """
    present = values.notna()
    text = values[present].map(_zip_text)
    bad = present.copy()
    bad[present] = ~text.str.fullmatch(r"\d{5}(-?\d{4})?|\d{3}")
    _first_bad(bad, column, "is not a ZIP code")
    prefix = text.str[:3]
    restricted = prefix.isin(RESTRICTED_ZIP3)
    prefix[restricted] = "000"
    out = pd.Series(None, index=values.index, dtype=object)
    out[present] = prefix
    changed = int((prefix != values[present].astype(str).str.strip()).sum())
    return out, changed, int(restricted.sum())


def _zip_text(value: object) -> str:
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):05d}"
    text = str(value).strip()
    return text.zfill(5) if text.isdigit() and len(text) == 4 else text


def _first_bad(bad: pd.Series, column: str, problem: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise DataError(
            f"column '{column}' row {row} {problem}; fix it or set the column's action in "
            "the policy (drop or keep)"
        )

"""Dates under Safe Harbor: reduced to the year, or shifted by a per-patient offset.

A shift keeps every interval between one patient's dates (length of stay, time to
readmission) because all of that patient's dates move by the same number of days.
Birth dates whose year alone could mean an age of 90 or more are suppressed in both
modes. A date written without its year ("Mar 3") has no year to keep: it is emptied.

A column of dates reduced to the year is written as ``NAME_year`` unless its name already
says date or year (``admission_date``, ``dob``, ``birth_year``): a file of plain numbers
keeps that knowledge only in its header, so whoever reads it (``medserve schema``, a
spreadsheet) sees calendar time, not an amount.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from medserve.deid.shapes import DATE_VALUE, MONTH_DAY_VALUE
from medserve.errors import DataError

OLDEST_AGE_SHOWN = 89
# Names that already say a date or a year. Schema inference (``medserve.data.infer``) reads
# years under a name with any of these words as calendar time; tests/deid pin the two.
_SAYS_DATE = re.compile(r"date|year|yob|dob|birth", re.IGNORECASE)
YEAR_SUFFIX = "_year"


def year_column(column: str, taken: Iterable[str]) -> str | None:
    """The name to write a column of years under, when its own does not say date or year:
    ``seen`` → ``seen_year`` (``seen_year_2`` … when that is ``taken``); else None."""
    if _SAYS_DATE.search(column):
        return None
    taken = set(taken)
    name, number = f"{column}{YEAR_SUFFIX}", 1
    while name in taken:
        number += 1
        name = f"{column}{YEAR_SUFFIX}_{number}"
    return name


def without_year(values: pd.Series) -> pd.Series:
    """True where a value is a month and day with no year ("Mar 3", "3rd March")."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.Series(False, index=values.index)
    return values.map(
        lambda value: (
            isinstance(value, str) and MONTH_DAY_VALUE.fullmatch(value.strip()) is not None
        )
    ).astype(bool)


def parse_dates(values: pd.Series, column: str) -> pd.Series:
    """Datetimes for every present value; DataError naming the column and the first bad row.

    ISO 8601 is tried first, then values written like dates (``3/14/2021``,
    ``14 Mar 2021``; US month/day order). Dates without a year become missing (see
    ``without_year``). The message gives the row number, never the value: it is
    protected health information.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return _naive(values)
    present = values.notna() & ~without_year(values)
    text = values[present].astype(str).str.strip()
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
    retry = parsed.isna() & text.map(lambda value: DATE_VALUE.fullmatch(value) is not None).astype(
        bool
    )
    if retry.any():
        parsed[retry] = pd.to_datetime(text[retry], errors="coerce", format="mixed", utc=True)
    bad = present.copy()
    bad[present] = parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        more = int(bad.sum()) - 1
        raise DataError(
            f"column '{column}' mixes dates and other values: row {row}"
            + (f" (and {more} more)" if more else "")
            + " is not a date; fix the values or set the column's action in the policy "
            "(drop or keep)"
        )
    return _naive(parsed.reindex(values.index))


def to_year(dates: pd.Series) -> pd.Series:
    return dates.dt.year.astype("Int64")


def shift(dates: pd.Series, offsets_days: pd.Series) -> pd.Series:
    return dates + pd.to_timedelta(offsets_days, unit="D")


def aged_90_or_more(birth: pd.Series, reference: dt.date) -> pd.Series:
    """True where the birth year alone could mean an age over 89 on ``reference`` (the Safe
    Harbor cut): born in or before the year ``reference.year - 90``. Judged on the year, so
    a year written by an earlier pass is judged as the full date was."""
    return birth.notna() & (birth.dt.year <= reference.year - OLDEST_AGE_SHOWN - 1)


def _naive(dates: pd.Series) -> pd.Series:
    """Timezone-aware datetimes → naive UTC, so shifts and years compare across rows."""
    if dates.dt.tz is not None:
        dates = dates.dt.tz_convert(None)
    return dates

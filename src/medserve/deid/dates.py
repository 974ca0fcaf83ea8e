"""Dates under Safe Harbor: reduced to the year, or shifted by a per-patient offset.

A shift keeps every interval between one patient's dates (length of stay, time to
readmission) because all of that patient's dates move by the same number of days.
Birth dates of people aged 90 or more are suppressed in both modes, since the year
alone would reveal an age over 89.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from medserve.deid.detect import DATE_VALUE
from medserve.errors import DataError

OLDEST_AGE_SHOWN = 89


def parse_dates(values: pd.Series, column: str) -> pd.Series:
    """Datetimes for every present value; DataError naming the column and the first bad row.

    ISO 8601 is tried first, then values written like dates (``3/14/2021``,
    ``14 Mar 2021``; US month/day order). The message gives the row number, never the
    value: it is protected health information.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return _naive(values)
    present = values.notna()
    text = values[present].astype(str).str.strip()
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
    retry = parsed.isna() & text.map(lambda value: DATE_VALUE.fullmatch(value) is not None)
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
    """True where a birth date means an age over 89 on ``reference`` (the Safe Harbor cut)."""
    cutoff = pd.Timestamp(reference.replace(year=reference.year - OLDEST_AGE_SHOWN - 1))
    return birth.notna() & (birth <= cutoff)


def _naive(dates: pd.Series) -> pd.Series:
    """Timezone-aware datetimes → naive UTC, so shifts and years compare across rows."""
    if dates.dt.tz is not None:
        dates = dates.dt.tz_convert(None)
    return dates

"""Re-identification risk of a de-identified table: k-anonymity over its quasi-identifiers.

A record in a group of k records that share every quasi-identifier (age band, sex,
ZIP3, …) can be told apart from at most k - 1 others by someone who knows those
facts about a person. The summary gives the smallest group and the share of records
in groups smaller than a chosen k (5 by default).
"""

from __future__ import annotations

import pandas as pd

from medserve.deid.report import KAnonymity, QuasiIdentifier

AGE_BAND_YEARS = 10
MISSING = "(missing)"


def k_anonymity(frame: pd.DataFrame, quasi: dict[str, str], k: int) -> KAnonymity:
    """Smallest group size and records in groups under ``k``; ``quasi`` maps column → kind."""
    over = [QuasiIdentifier(column=column, as_=_described(kind)) for column, kind in quasi.items()]
    if not quasi or frame.empty:
        size = len(frame) if not frame.empty else None
        return KAnonymity(
            quasi_identifiers=over,
            k=k,
            records=len(frame),
            groups=1 if size else 0,
            min_group_size=size,
            records_in_groups_below_k=0 if size is None or size >= k else size,
            share_in_groups_below_k=0.0 if size is None or size >= k else 1.0,
        )
    keys = pd.DataFrame({column: _coarsened(frame[column], kind) for column, kind in quasi.items()})
    sizes = keys.groupby(list(keys.columns), sort=False).transform("size")
    below = int((sizes < k).sum())
    return KAnonymity(
        quasi_identifiers=over,
        k=k,
        records=len(frame),
        groups=int(keys.drop_duplicates().shape[0]),
        min_group_size=int(sizes.min()),
        records_in_groups_below_k=below,
        share_in_groups_below_k=round(below / len(frame), 4),
    )


def _coarsened(values: pd.Series, kind: str) -> pd.Series:
    """What an outsider would match on: ten-year age bands, birth years, values as text."""
    if kind == "age":
        numbers = pd.to_numeric(values, errors="coerce")
        low = (numbers // AGE_BAND_YEARS * AGE_BAND_YEARS).astype("Int64")
        band = low.astype(str) + "-" + (low + AGE_BAND_YEARS - 1).astype(str)
        text = values.astype(str).where(values.notna(), MISSING)
        return band.where(numbers.notna(), text).astype(str)
    if kind in ("birth_date", "date") and pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.year.astype("Int64").astype(str).replace("<NA>", MISSING)
    return values.astype(str).where(values.notna(), MISSING)


def _described(kind: str) -> str:
    return {
        "age": f"{AGE_BAND_YEARS}-year age band",
        "birth_date": "birth year",
        "date": "year",
        "zip": "ZIP3",
    }.get(kind, kind)

"""What of a model's schema may be shown to the people and programs that use the model.

A schema records what training saw of each column: its levels and its range. Shown as
they are, those can carry identifiers that de-identification left behind: a relative's
name as a level, a social security number as the maximum of a numeric column. So every
place that publishes a schema (the HTTP model routes, ``medserve models show``, the
messages that refuse a record) shows it through this module:

- ranges are widened outward to round bounds (steps of half a power of ten below their
  span: ages 28–77 are shown as 25–80) when a model is trained, so raw extremes are never
  stored, and again when shown, for models stored before;
- a column's levels are shown only when it has at most ``MAX_PUBLISHED_LEVELS`` of them;
- a missing token is shown when it is a number or a short word: not free text or a
  code that a stray cell of a lab column left as a token;
- nothing of a column that de-identification kept but flagged for review (its values
  look like identifiers, or were never classified) is shown: no levels, no range.

The registry keeps the full schema (the model needs its levels to encode a record); this
is only about what leaves it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the schema module asks this one what a refusal may name
    from medserve.data.schema import ColumnSpec, Schema

# More levels than this and a column's levels are not shown (nor inferred as a feature:
# see data/infer.py); a declared column keeps them for the model all the same.
MAX_PUBLISHED_LEVELS = 50
# Longer missing tokens (or any with a digit, unless a number) are not shown.
MAX_TOKEN_CHARS = 24


def widened_bounds(low: float, high: float) -> tuple[float, float]:
    """``low`` and ``high`` rounded outward to multiples of half a power of ten: the largest
    such step not above half the span (or the value itself, for a constant column). The
    rounding is repeated until it changes nothing, so rounding again changes nothing."""
    for _ in range(8):  # a step grows tenfold at most each time: this settles in two or three
        rounded = _rounded_outward(low, high)
        if rounded == (low, high):
            break
        low, high = rounded
    return low, high


def _rounded_outward(low: float, high: float) -> tuple[float, float]:
    span = high - low
    scale = span if span > 0 else max(abs(low), abs(high))
    if not math.isfinite(scale) or scale == 0:
        return low, high
    step = 10.0 ** math.floor(math.log10(scale)) / 2
    return _clean(math.floor(low / step) * step), _clean(math.ceil(high / step) * step)


def withheld_columns(schema: Schema) -> frozenset[str]:
    """Columns none of whose values may be shown: flagged by de-identification's review."""
    record = schema.deidentification or {}
    return frozenset(str(name) for name in record.get("review") or [])


def shown_levels(spec: ColumnSpec, withheld: frozenset[str]) -> list[str] | None:
    """The levels that may be shown for ``spec``; None when they may not (or it has none)."""
    if spec.categories is None or spec.name in withheld:
        return None
    if len(spec.categories) > MAX_PUBLISHED_LEVELS:
        return None
    return list(spec.categories)


def shown_tokens(spec: ColumnSpec, withheld: frozenset[str]) -> list[str]:
    """The missing tokens that may be shown: numbers ("0") and short words ("unknown",
    "haemolysed"); not free text or codes that a lab column's stray cells left as tokens
    (a comment naming someone, a record number), nor anything of a withheld column."""
    if spec.name in withheld:
        return []
    return [token for token in spec.missing_tokens if _plain_token(token)]


def _plain_token(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return len(token) <= MAX_TOKEN_CHARS and not any(ch.isdigit() for ch in token)


def shown_bounds(spec: ColumnSpec, withheld: frozenset[str]) -> tuple[float, float] | None:
    """The training range that may be shown for ``spec`` (widened); None when it may not."""
    if spec.minimum is None or spec.maximum is None or spec.name in withheld:
        return None
    return widened_bounds(spec.minimum, spec.maximum)


def public_schema(schema: Schema) -> dict[str, Any]:
    """The schema as JSON, with what may not be shown taken out."""
    withheld = withheld_columns(schema)
    shown = schema.model_dump(mode="json")
    for spec, column in zip(schema.columns, shown["columns"], strict=True):
        column["categories"] = shown_levels(spec, withheld)
        bounds = shown_bounds(spec, withheld)
        column["minimum"], column["maximum"] = bounds if bounds else (None, None)
        column["missing_tokens"] = shown_tokens(spec, withheld)
        if spec.name in withheld:
            column["note"] = "values withheld: de-identification flagged this column for review"
    return shown


def _clean(value: float) -> float:
    """Floating-point noise off a rounded bound (0.30000000000000004 → 0.3)."""
    return float(f"{value:.12g}")

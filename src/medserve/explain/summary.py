"""One sentence a clinician can read: the risk, its band, and the inputs that moved it most."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from medserve.data.schema import ColumnSpec, Schema
from medserve.explain.explainer import Explanations

# Contributions smaller than this (log-odds) are not worth naming.
NOTABLE_LOG_ODDS = 0.01
MOST_RAISING = 3
MOST_LOWERING = 2


def summary_sentence(
    risk: float,
    band: str,
    columns: Sequence[str],
    contributions: np.ndarray,
    values: Mapping[str, object],
) -> str:
    """e.g. "Risk 0.72 (high). Raised most by: cp = asymptomatic, oldpeak = 2.3; lowered
    most by: age = 41." — the record's own values are shown to whoever sent them."""
    order = np.argsort(-contributions, kind="stable")
    raising = [j for j in order[:MOST_RAISING] if contributions[j] > NOTABLE_LOG_ODDS]
    lowering = [j for j in order[::-1][:MOST_LOWERING] if contributions[j] < -NOTABLE_LOG_ODDS]
    sentence = f"Risk {risk:.2f} ({band})."
    if raising:
        sentence += " Raised most by: " + _named(raising, columns, values)
    else:
        sentence += " No input raised it notably"
    if lowering:
        sentence += "; lowered most by: " + _named(lowering, columns, values)
    return sentence + "."


def _named(indices: list[int], columns: Sequence[str], values: Mapping[str, object]) -> str:
    return ", ".join(f"{columns[j]} = {_shown(values.get(columns[j]))}" for j in indices)


def explained(
    explanations: Explanations,
    risk: Sequence[float],
    bands: Sequence[str],
    rows: Sequence[Mapping[str, object]],
    schema: Schema | None = None,
) -> list[dict]:
    """Each record's explanation object, its summary written from its own values (as the
    model read them, when ``schema`` is given: a missing token reads "not measured")."""
    specs = {spec.name: spec for spec in schema.features} if schema is not None else {}
    return [
        explanations.record(
            i,
            summary_sentence(
                risk[i],
                bands[i],
                explanations.columns,
                contributions,
                _as_read(rows[i], specs) if specs else rows[i],
            ),
        )
        for i, contributions in enumerate(explanations.contributions)
    ]


def _as_read(row: Mapping[str, object], specs: Mapping[str, ColumnSpec]) -> dict:
    """The row's values as the model read them: missing tokens → None, and a level never
    seen in training marked as such."""
    read = dict(row)
    for name, spec in specs.items():
        value = row.get(name)
        if value is None or isinstance(value, bool):
            continue
        text = str(value).strip()
        if _is_token(text, spec.missing_tokens):
            read[name] = None
        elif not spec.numeric_encoded and spec.categories:
            if text.lower() not in {level.lower() for level in spec.categories}:
                read[name] = f"{text} (not seen in training)"
    return read


def _is_token(text: str, tokens: Sequence[str]) -> bool:
    for token in tokens:
        if text.lower() == token.lower():
            return True
        try:
            if float(text) == float(token):
                return True
        except ValueError:
            continue
    return False


def _shown(value: object) -> str:
    if value is None or value == "" or (not isinstance(value, str) and pd.isna(value)):
        return "not measured"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    return str(value)

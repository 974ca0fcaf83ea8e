"""One sentence a clinician can read: the risk, its band, and the inputs that moved it most."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from medserve.data.schema import Schema
from medserve.data.values import UnreadableValue, ValueReader
from medserve.explain.explainer import Explanations
from medserve.explain.sentences import SentenceEffect, described

# Contributions smaller than this (log-odds) are not worth naming.
NOTABLE_LOG_ODDS = 0.01
MOST_RAISING = 3
MOST_LOWERING = 2
# The longest value a summary shows whole.
SHOWN_CHARS = 60


def summary_sentence(
    risk: float,
    band: str,
    columns: Sequence[str],
    contributions: np.ndarray,
    values: Mapping[str, object],
    sentences: Mapping[str, Sequence[SentenceEffect]] | None = None,
) -> str:
    """e.g. "Risk 0.72 (high). Raised most by: cp = asymptomatic, oldpeak = 2.3; lowered
    most by: age = 41." — the record's own values are shown to whoever sent them. A note
    is named by the sentences that moved it most: "note: 'troponin elevated' raised risk"."""
    order = np.argsort(-contributions, kind="stable")
    raising = [j for j in order[:MOST_RAISING] if contributions[j] > NOTABLE_LOG_ODDS]
    lowering = [j for j in order[::-1][:MOST_LOWERING] if contributions[j] < -NOTABLE_LOG_ODDS]
    sentence = f"Risk {risk:.2f} ({band})."
    if raising:
        sentence += " Raised most by: " + _named(raising, columns, values, sentences, True)
    else:
        sentence += " No input raised it notably"
    if lowering:
        sentence += "; lowered most by: " + _named(lowering, columns, values, sentences, False)
    return sentence + "."


def _named(
    indices: list[int],
    columns: Sequence[str],
    values: Mapping[str, object],
    sentences: Mapping[str, Sequence[SentenceEffect]] | None,
    raised: bool,
) -> str:
    named = []
    for j in indices:
        column = columns[j]
        effects = (sentences or {}).get(column)
        note = described(column, effects, raised) if effects else None
        named.append(note or f"{column} = {_shown(values.get(column))}")
    return ", ".join(named)


def explained(
    explanations: Explanations,
    risk: Sequence[float],
    bands: Sequence[str],
    rows: Sequence[Mapping[str, object]],
    schema: Schema | None = None,
) -> list[dict]:
    """Each record's explanation object, its summary written from its own values (as the
    model read them, when ``schema`` is given: a missing token reads "not measured")."""
    readers = [ValueReader.of(spec) for spec in schema.features] if schema is not None else []
    return [
        explanations.record(
            i,
            summary_sentence(
                risk[i],
                bands[i],
                explanations.columns,
                contributions,
                as_read(rows[i], readers) if readers else rows[i],
                explanations.sentences[i] if explanations.sentences is not None else None,
            ),
        )
        for i, contributions in enumerate(explanations.contributions)
    ]


def as_read(row: Mapping[str, object], readers: Sequence[ValueReader]) -> dict:
    """The row's values as the model read them (``medserve.data.values``): None for what
    it read as not measured, a level in its training spelling, and a level never seen in
    training marked as such; numbers and unreadable values as sent."""
    read = dict(row)
    for reader in readers:
        value = row.get(reader.name)
        try:
            reading = reader.read(value)
        except UnreadableValue:
            continue
        if reading is None:
            read[reader.name] = None
        elif isinstance(reading, str):
            unseen = reader.unseen(reading)
            read[reader.name] = f"{reading} (not seen in training)" if unseen else reading
    return read


def _shown(value: object) -> str:
    if value is None or value == "" or (not isinstance(value, str) and pd.isna(value)):
        return "not measured"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    text = str(value)
    # A note named whole (one sentence, or none that moved the risk): its start only.
    return text if len(text) <= SHOWN_CHARS else f"'{text[: SHOWN_CHARS - 1].rstrip()}…'"

"""One sentence a clinician can read: the risk, its band, and the inputs that moved it most."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Factor:
    """One input that moved a record's risk notably: its clinical label, its value as the
    model read it (with its unit), and its effect on the log-odds."""

    column: str
    label: str
    value: str
    effect: float

    @property
    def raises(self) -> bool:
        return self.effect > 0

    @property
    def shown(self) -> str:
        """e.g. "resting blood pressure = 160 mmHg"."""
        return f"{self.label} = {self.value}"


def top_factors(
    columns: Sequence[str],
    contributions: Sequence[float] | np.ndarray,
    values: Mapping[str, object],
    schema: Schema | None = None,
) -> tuple[list[Factor], list[Factor]]:
    """The inputs that raised the risk most (up to MOST_RAISING) and lowered it most (up
    to MOST_LOWERING), each past NOTABLE_LOG_ODDS, named by the schema's labels and units."""
    effects = np.asarray(contributions, dtype=float)
    order = np.argsort(-effects, kind="stable")
    raising = [j for j in order[:MOST_RAISING] if effects[j] > NOTABLE_LOG_ODDS]
    lowering = [j for j in order[::-1][:MOST_LOWERING] if effects[j] < -NOTABLE_LOG_ODDS]
    specs = {spec.name: spec for spec in schema.columns} if schema is not None else {}

    def factor(j: int) -> Factor:
        column = columns[j]
        spec = specs.get(column)
        value = _shown(values.get(column))
        if spec is not None and spec.unit and value != "not measured":
            value = f"{value} {spec.unit}"
        label = spec.shown_name if spec is not None else column
        return Factor(column, label, value, float(effects[j]))

    return [factor(j) for j in raising], [factor(j) for j in lowering]


def summary_sentence(
    risk: float,
    band: str,
    columns: Sequence[str],
    contributions: np.ndarray,
    values: Mapping[str, object],
    sentences: Mapping[str, Sequence[SentenceEffect]] | None = None,
    schema: Schema | None = None,
) -> str:
    """e.g. "Risk 0.72 (high). Raised most by: chest pain type = asymptomatic, oldpeak =
    2.3; lowered most by: age = 41 years." — the record's own values are shown to whoever
    sent them, each input under its clinical label and unit when the schema has them. A
    note is named by the sentences that moved it most: "note: 'troponin elevated' raised
    risk"."""
    raising, lowering = top_factors(columns, contributions, values, schema)
    sentence = f"Risk {risk:.2f} ({band})."
    if raising:
        sentence += " Raised most by: " + _named(raising, sentences, True)
    else:
        sentence += " No input raised it notably"
    if lowering:
        sentence += "; lowered most by: " + _named(lowering, sentences, False)
    return sentence + "."


def _named(
    factors: list[Factor],
    sentences: Mapping[str, Sequence[SentenceEffect]] | None,
    raised: bool,
) -> str:
    named = []
    for factor in factors:
        effects = (sentences or {}).get(factor.column)
        note = described(factor.label, effects, raised) if effects else None
        named.append(note or factor.shown)
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
                schema,
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

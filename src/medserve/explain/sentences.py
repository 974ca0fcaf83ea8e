"""Which sentences of a note moved the risk, by leave-one-sentence-out: the note scored
again without each sentence in turn; a sentence's effect is how much the log-odds fall
without it (positive: it raised the risk). It is exact about what the model does with
each sentence removed, and approximate as an attribution (sentences interact)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from medserve.core.risk import risk_logit
from medserve.features.text import sentences

METHOD = "leave-one-sentence-out (the note rescored without each sentence)"
# Sentences named per note, at most, and the smallest effect worth naming (log-odds).
SHOWN = 3
NOTABLE = 0.01
# Of longer notes, the first sentences are tried (each costs one encoding).
MAX_SENTENCES = 40


@dataclass(frozen=True)
class SentenceEffect:
    sentence: str
    effect: float  # log-odds the sentence adds (the note's log-odds less those without it)

    def to_dict(self) -> dict:
        return {"sentence": self.sentence, "log_odds": self.effect}


def sentence_effects(
    risk_of: Callable[[pd.DataFrame], np.ndarray], frame: pd.DataFrame, columns: Sequence[str]
) -> list[dict[str, list[SentenceEffect]]]:
    """Per row of ``frame``, per note column: its sentences' effects, largest first.
    ``risk_of`` scores raw records (the model's ``predict_risk``); one batch per row."""
    found: list[dict[str, list[SentenceEffect]]] = []
    for position in range(len(frame)):
        row = frame.iloc[[position]]
        effects: dict[str, list[SentenceEffect]] = {}
        for column in columns:
            note = row[column].iloc[0]
            parts = sentences(note) if isinstance(note, str) else []
            if len(parts) < 2:
                continue
            tried = range(min(len(parts), MAX_SENTENCES))  # each variant keeps all the others
            variants = pd.concat([row] * (len(tried) + 1), ignore_index=True)
            variants.loc[1:, column] = [" ".join(parts[:i] + parts[i + 1 :]) for i in tried]
            log_odds = risk_logit(np.asarray(risk_of(variants), dtype=float))
            changes = log_odds[0] - log_odds[1:]
            order = np.argsort(-np.abs(changes), kind="stable")
            effects[column] = [SentenceEffect(parts[i], float(changes[i])) for i in order]
        found.append(effects)
    return found


def described(column: str, effects: Sequence[SentenceEffect], raised: bool) -> str | None:
    """e.g. "note: 'troponin elevated' raised risk" — the sentences that moved it most in
    the note's direction; None where none moved it notably."""
    moving = [e for e in effects if (e.effect > NOTABLE if raised else e.effect < -NOTABLE)]
    if not moving:
        return None
    quoted = ", ".join(f"'{e.sentence}'" for e in moving[:SHOWN])
    return f"{column}: {quoted} {'raised' if raised else 'lowered'} risk"

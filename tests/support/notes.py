"""Small synthetic tables with clinical-style notes that carry the signal (made here:
nothing is downloaded). Half the patients have a note sentence that marks the event."""

from __future__ import annotations

import numpy as np
import pandas as pd

RAISING = (
    "Troponin elevated on arrival.",
    "ST depression on the ECG.",
    "Crushing chest pain radiating to the left arm.",
)
LOWERING = (
    "Pain reproducible on palpation.",
    "Normal ECG and troponin negative.",
    "Symptoms resolved with antacids.",
)
FILLER = (
    "Patient seen in clinic.",
    "Vitals stable.",
    "Family history unremarkable.",
    "Lives with spouse.",
)


def notes_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """age, note and event: a raising sentence (in half the notes) moves the event's
    odds ~6-fold, age a little; a lowering sentence is in some of the others, and the
    filler sentences (one to three) are noise, in random order."""
    rng = np.random.default_rng(seed)
    age = rng.integers(30, 80, n)
    marked = rng.random(n) < 0.5
    notes = []
    for flag in marked:
        parts = list(rng.choice(FILLER, int(rng.integers(1, 4)), replace=False))
        if flag:
            parts.append(rng.choice(RAISING))
        elif rng.random() < 0.4:
            parts.append(rng.choice(LOWERING))
        rng.shuffle(parts)
        notes.append(" ".join(parts))
    log_odds = -2.5 + 0.03 * age + 1.8 * marked
    event = (rng.random(n) < 1 / (1 + np.exp(-log_odds))).astype(int)
    return pd.DataFrame({"age": age, "note": notes, "event": event})

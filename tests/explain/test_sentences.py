"""Leave-one-sentence-out on a model whose log-odds are known: the sentence that moves them
is found, and a long note's other sentences are kept in every variant."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from medserve.explain.sentences import MAX_SENTENCES, described, sentence_effects


def _risk_of(frame: pd.DataFrame) -> np.ndarray:
    """Log-odds 2 where the note says troponin, 0 otherwise."""
    return expit(np.where(frame["note"].str.contains("Troponin"), 2.0, 0.0))


def test_the_sentence_that_moves_the_log_odds_is_named_first():
    frame = pd.DataFrame({"note": ["Vitals stable. Troponin elevated. Lives alone."]})
    (effects,) = sentence_effects(_risk_of, frame, ["note"])
    first = effects["note"][0]
    assert first.sentence == "Troponin elevated."
    np.testing.assert_allclose(first.effect, 2.0, atol=1e-6)
    assert [abs(e.effect) < 1e-6 for e in effects["note"][1:]] == [True, True]
    assert (
        described("note", effects["note"], raised=True) == "note: 'Troponin elevated.' raised risk"
    )


def test_a_long_notes_later_sentences_stay_in_every_variant():
    note = " ".join(["Vitals stable."] * (MAX_SENTENCES + 5) + ["Troponin elevated."])
    (effects,) = sentence_effects(_risk_of, pd.DataFrame({"note": [note]}), ["note"])
    assert len(effects["note"]) == MAX_SENTENCES
    assert all(abs(e.effect) < 1e-6 for e in effects["note"])  # none of these moved it


def test_a_summary_shows_the_start_of_a_long_value_not_all_of_it():
    from medserve.explain.summary import SHOWN_CHARS, summary_sentence

    note = "x" * 30_000
    summary = summary_sentence(0.7, "high", ["note"], np.array([1.0]), {"note": note})
    assert len(summary) < SHOWN_CHARS + 60
    assert "note = 'xxx" in summary and "…'" in summary

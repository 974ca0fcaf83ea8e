"""Schema inference describes each column as every channel later reads it: missing
tokens match in any case and spacing (medserve.data.values), so the training levels,
ranges and missing fractions agree with the prepared features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medserve.data import infer_schema


def smokers(n: int = 40) -> pd.DataFrame:
    answers = ["yes", "no", "Unknown", "UNKNOWN", " unknown ", "no", "yes", "no"]
    return pd.DataFrame(
        {
            "smoker": [answers[i % len(answers)] for i in range(n)],
            "chol": [["0", "0.0", 180, 240][i % 4] for i in range(n)],
            "age": np.arange(n) % 30 + 40,
            "y": np.arange(n) % 2,
        }
    )


def test_a_missing_token_in_another_case_is_missing_in_the_schema_as_in_the_data():
    frame = smokers()
    schema = infer_schema(frame, target="y", missing_tokens={"smoker": ["unknown"], "chol": ["0"]})
    smoker = schema.column("smoker")
    assert smoker.categories == ["no", "yes"]
    prepared = schema.prepare(frame)
    assert smoker.missing_fraction == prepared["smoker"].isna().mean() == 15 / 40
    chol = schema.column("chol")
    assert chol.missing_fraction == prepared["chol"].isna().mean() == 0.5
    assert (chol.minimum, chol.maximum) == (180.0, 240.0)


def test_a_level_that_is_no_token_keeps_its_spelling():
    frame = smokers().replace(
        {"Unknown": "Declined", "UNKNOWN": "DECLINED", " unknown ": "declined"}
    )
    schema = infer_schema(frame, target="y", missing_tokens={"smoker": ["DECLINED"]})
    assert schema.column("smoker").categories == ["no", "yes"]
    unmarked = infer_schema(frame, target="y", missing_tokens={"smoker": []})
    assert unmarked.column("smoker").categories == ["DECLINED", "Declined", "declined", "no", "yes"]
    assert unmarked.column("smoker").missing_fraction == 0.0


def test_the_usual_words_for_no_value_are_missing_without_being_declared():
    schema = infer_schema(smokers(), target="y")
    assert schema.column("smoker").categories == ["no", "yes"]
    assert schema.column("smoker").missing_fraction == 15 / 40

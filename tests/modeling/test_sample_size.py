"""Riley et al.'s minimum sample size (BMJ 2020) agrees with the paper's worked example and
pmsampsize, and the candidate parameters are counted as the logistic pipeline encodes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from medserve.data.schema import ColumnSpec, Schema
from medserve.errors import ConfigError, DataError
from medserve.modeling.preprocess import build_preprocessor
from medserve.modeling.sample_size import (
    DEFAULT_R2_SHARE,
    candidate_parameters,
    max_r2_cs,
    sample_size_check,
)


def test_riley_binary_example_gives_the_published_minimum():
    # Riley et al. 2020 / pmsampsize: 24 parameters, prevalence 0.174, R²cs 0.288.
    check = sample_size_check(24, 1000, 174, r2_cs=0.288)
    rows = {criterion.key: criterion.minimum_rows for criterion in check.criteria}
    assert rows == {"shrinkage": 623, "optimism": 662, "overall_risk": 221}
    assert (check.minimum_rows, check.minimum_events) == (662, 116)
    assert check.minimum_events_per_parameter == pytest.approx(116 / 24)
    assert check.max_r2_cs == pytest.approx(0.6032, abs=1e-4)
    assert check.r2_source == "supplied" and check.meets
    assert check.shortfall_notice() is None


def test_criteria_are_the_closed_form_formulas():
    check = sample_size_check(10, 400, 60, r2_cs=0.1)
    prevalence = 60 / 400
    largest = 1 - (prevalence**prevalence * (1 - prevalence) ** (1 - prevalence)) ** 2
    small = 0.1 / (0.1 + 0.05 * largest)
    expected = {
        "shrinkage": math.ceil(10 / ((0.9 - 1) * math.log(1 - 0.1 / 0.9))),
        "optimism": math.ceil(10 / ((small - 1) * math.log(1 - 0.1 / small))),
        "overall_risk": math.ceil((1.96 / 0.05) ** 2 * prevalence * (1 - prevalence)),
    }
    assert {c.key: c.minimum_rows for c in check.criteria} == expected
    assert check.minimum_rows == max(expected.values())
    assert check.minimum_events == math.ceil(check.minimum_rows * prevalence)


def test_without_an_r2_the_conservative_default_is_used_and_said():
    check = sample_size_check(24, 303, 139)
    assert check.r2_cs == pytest.approx(DEFAULT_R2_SHARE * max_r2_cs(139 / 303))
    assert "15%" in check.r2_source
    assert max_r2_cs(0.5) == pytest.approx(0.75)


def test_a_shortfall_says_what_is_needed_what_there_is_and_what_medserve_does():
    check = sample_size_check(24, 500, 87, r2_cs=0.288)
    assert not check.meets
    notice = check.shortfall_notice()
    assert notice is not None
    for text in ("24 candidate predictor parameters", "662 rows", "500 rows", "87 events"):
        assert text in notice, text
    assert "simpler models" in notice


def test_the_minimum_itself_meets_it_and_fewer_rows_do_not():
    needed = sample_size_check(5, 1000, 200, r2_cs=0.2).minimum_rows  # prevalence 0.2
    rows = -(-needed // 5) * 5  # the smallest multiple of 5 at or above it: prevalence 0.2
    at_minimum = sample_size_check(5, rows, rows // 5, r2_cs=0.2)
    assert at_minimum.minimum_rows == needed and at_minimum.meets
    assert at_minimum.minimum_events <= rows // 5
    assert not sample_size_check(5, rows - 5, rows // 5 - 1, r2_cs=0.2).meets


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((0, 100, 10), {}, ConfigError, "at least one"),
        ((5, 100, 0), {}, DataError, "between 0 and 1"),
        ((5, 100, 100), {}, DataError, "between 0 and 1"),
        ((5, 0, 0), {}, DataError, "between 0 and 1"),
        ((5, 100, 50), {"r2_cs": 0.8}, ConfigError, "its maximum"),
        ((5, 100, 50), {"r2_cs": 0.0}, ConfigError, "between 0 and"),
    ],
)
def test_impossible_input_is_refused_clearly(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        sample_size_check(*args, **kwargs)


def _schema() -> tuple[Schema, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = 80
    age = rng.normal(60, 10, n)
    chol = rng.normal(200, 30, n)
    chol[:5] = np.nan
    frame = pd.DataFrame(
        {
            "id": np.arange(n).astype(str),
            "age": age,
            "chol": chol,
            "smoker": rng.integers(0, 2, n).astype(float),
            "cp": rng.choice(["a", "b", "c", "d"], n),
            "ward": np.where(np.arange(n) < 4, None, rng.choice(["x", "y", "z"], n)),
            "sex": rng.choice(["F", "M"], n),
            "note": ["free text"] * n,
            "y": rng.integers(0, 2, n),
        }
    )
    columns = [
        ColumnSpec(name="id", type="categorical", role="id"),
        ColumnSpec(name="age", type="numeric"),
        ColumnSpec(name="chol", type="numeric", missing_fraction=5 / n),
        ColumnSpec(name="smoker", type="binary"),
        ColumnSpec(name="cp", type="categorical", categories=["a", "b", "c", "d"]),
        ColumnSpec(
            name="ward", type="categorical", categories=["x", "y", "z"], missing_fraction=4 / n
        ),
        ColumnSpec(name="sex", type="binary", categories=["F", "M"]),
        ColumnSpec(name="note", type="text", role="text"),
        ColumnSpec(name="y", type="binary", role="target"),
    ]
    return Schema(columns=columns), frame


def test_candidate_parameters_count_as_the_logistic_pipeline_encodes():
    schema, frame = _schema()
    # age 1, chol 1 + missing indicator, smoker 1, cp 4 − 1, ward 3 + (missing) − 1, sex 1;
    # id, free text and the outcome add none.
    assert candidate_parameters(schema) == 1 + 2 + 1 + 3 + 3 + 1
    preprocessor = build_preprocessor(schema).fit(schema.prepare(frame))
    encoded = preprocessor.transform(schema.prepare(frame))
    # The pipeline's columns less, per level column, its reference level and, where
    # training saw no missing value, its always-zero '(missing)' column.
    never_seen = int(np.sum(~encoded.any(axis=0)))
    level_columns = sum(1 for c in schema.features if not c.numeric_encoded)
    assert encoded.shape[1] - level_columns - never_seen == candidate_parameters(schema)


def test_the_r2_of_an_out_of_fold_log_loss():
    import math

    import numpy as np

    from medserve.modeling.sample_size import max_r2_cs, r2_cs_out_of_fold

    y = np.array([1] * 30 + [0] * 70)
    entropy = -(0.3 * math.log(0.3) + 0.7 * math.log(0.7))
    assert r2_cs_out_of_fold(entropy, y) is None  # no better than the overall rate
    assert r2_cs_out_of_fold(entropy - 0.1, y) == pytest.approx(1 - math.exp(-0.2))
    assert r2_cs_out_of_fold(1e-9, y) == pytest.approx(0.99 * max_r2_cs(0.3))

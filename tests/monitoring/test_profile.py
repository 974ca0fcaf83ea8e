"""The reference profile: decile bins and level shares of the training table, kept as
aggregates only, and its JSON document."""

import json

import numpy as np
import pandas as pd
import pytest

from medserve.data import ColumnSpec, Schema, infer_schema
from medserve.errors import DataError
from medserve.monitoring.profile import (
    BINS,
    ReferenceProfile,
    bin_index,
    build_profile,
    quantile_edges,
)


@pytest.fixture(scope="module")
def training(heart: pd.DataFrame) -> pd.DataFrame:
    return heart[heart["dataset"].isin(["Cleveland", "Hungary"])].reset_index(drop=True)


@pytest.fixture(scope="module")
def schema(training: pd.DataFrame) -> Schema:
    return infer_schema(training, target="num", positive_if=">0", ignore=["dataset"])


@pytest.fixture(scope="module")
def profile(schema: Schema, training: pd.DataFrame) -> ReferenceProfile:
    risk = np.random.default_rng(0).uniform(size=len(training))
    return build_profile(schema, training[schema.feature_names], risk)


def test_numeric_features_are_binned_at_their_deciles(profile):
    age = profile.features["age"]
    assert age.kind == "numeric" and age.levels == []
    assert len(age.edges) == BINS - 1 and age.edges == sorted(age.edges)
    assert len(age.fractions) == BINS and sum(age.fractions) == pytest.approx(1)
    assert all(0.05 < share < 0.15 for share in age.fractions)
    assert profile.n == 597 and len(profile.risk_fractions) == BINS


def test_few_distinct_values_make_fewer_bins(profile):
    # ca (vessels coloured) is 0-3, mostly 0, and missing in nearly all of Hungary.
    ca = profile.features["ca"]
    assert ca.edges == [0.0, 1.0, 2.0]  # (-inf, 0], (0, 1], (1, 2], (2, inf)
    assert len(ca.fractions) == 4 and sum(ca.fractions) == pytest.approx(1)
    assert 0.45 < ca.missing < 0.55


def test_level_features_keep_their_training_levels_and_shares(profile, schema):
    cp = profile.features["cp"]
    assert cp.kind == "levels" and cp.edges == []
    assert cp.levels == schema.column("cp").categories
    assert sum(cp.fractions) == pytest.approx(1)
    assert set(profile.features) == set(schema.feature_names)  # the id is no feature


def test_a_value_on_an_edge_falls_in_the_bin_below():
    edges = [1.0, 2.0]
    np.testing.assert_array_equal(
        bin_index(edges, np.array([0.5, 1.0, 1.5, 2.0, 2.5])), [0, 0, 1, 1, 2]
    )
    assert quantile_edges(np.array([0.0, 1.0, 1.0, 0.0, 1.0])) == [0.0]
    assert quantile_edges(np.array([5.0, 5.0])) == []
    assert quantile_edges(np.array([])) == []


def test_text_and_dates_are_not_profiled():
    schema = Schema(
        columns=[
            ColumnSpec(name="age", type="numeric"),
            ColumnSpec(name="note", type="text"),
            ColumnSpec(name="seen", type="datetime"),
            ColumnSpec(name="smoker", type="binary", categories=["no", "yes"]),
            ColumnSpec(name="flag", type="binary"),
        ]
    )
    frame = pd.DataFrame(
        {
            "age": ["50", "60", None, "70"],
            "note": ["chest pain at rest", "none", "x", "y"],
            "seen": ["2020-01-01"] * 4,
            "smoker": ["yes", "no", "YES", None],
            "flag": [0, 1, 1, 0],
        }
    )
    profile = build_profile(schema, frame, np.array([0.1, 0.2, 0.3, 0.4]))
    assert set(profile.features) == {"age", "smoker", "flag"}
    assert profile.features["age"].missing == 0.25
    assert profile.features["smoker"].fractions == pytest.approx([1 / 3, 2 / 3])
    assert profile.features["flag"].kind == "numeric"  # binary numbers bin as numbers
    assert profile.features["flag"].fractions == [0.5, 0.5]


def test_profile_refuses_risks_for_other_rows(schema, training):
    with pytest.raises(DataError, match="predicted risks"):
        build_profile(schema, training[schema.feature_names], np.zeros(3))


def test_profile_round_trips_through_its_json_document(profile):
    document = json.loads(json.dumps(profile.to_dict()))
    restored = ReferenceProfile.from_dict(document)
    assert restored.to_dict() == document
    assert restored.features["age"].edges == profile.features["age"].edges
    assert restored.risk_edges == pytest.approx(profile.risk_edges, rel=1e-11)
    assert set(document) == {"n", "features", "risk"}
    assert set(document["features"]["chol"]) == {"kind", "edges", "levels", "fractions", "missing"}


def _broken(profile: ReferenceProfile, change) -> dict:
    document = json.loads(json.dumps(profile.to_dict()))
    change(document)
    return document


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.clear(),
        lambda d: d.pop("risk"),
        lambda d: d.update(n="many"),
        lambda d: d["features"]["age"].update(kind="histogram"),
        lambda d: d["features"]["age"]["fractions"].pop(),
        lambda d: d["features"]["age"]["edges"].reverse(),
        lambda d: d["features"]["cp"]["levels"].append(3),
        lambda d: d["features"]["chol"].update(missing="none"),
        lambda d: d["risk"].update(edges="0.1,0.2"),
    ],
)
def test_from_dict_refuses_a_malformed_document(profile, change):
    with pytest.raises(DataError, match="reference profile is malformed"):
        ReferenceProfile.from_dict(_broken(profile, change))


@pytest.mark.parametrize("garbage", ["profile", ["n", 3], None, {"n": 3}])
def test_from_dict_refuses_garbage(garbage):
    with pytest.raises(DataError, match="reference profile is malformed"):
        ReferenceProfile.from_dict(garbage)

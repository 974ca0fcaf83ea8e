"""Subgroup levels at the edges: a level with one outcome class keeps its row and shows
what is defined there, with the reason for what is not."""

from __future__ import annotations

import json

import pytest
from scipy.stats import binomtest
from sklearn.metrics import brier_score_loss

from medserve.evaluation.subgroups import subgroup_table
from support.reports import synthetic

THRESHOLD = 0.4


@pytest.fixture(scope="module")
def wards():
    frame, y, risk = synthetic()  # ward W1: all events; W2 and W3: no events
    table = subgroup_table(frame, y, risk, THRESHOLD, ["ward"])
    levels = {level.level: level for level in table.groups[0].levels}
    rows = {ward: (frame["ward"] == ward).to_numpy() for ward in levels}
    return levels, rows, y, risk


def wilson(successes: int, trials: int) -> tuple[float, float]:
    interval = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return interval.low, interval.high


def test_no_level_is_dropped_and_counts_are_reported(wards):
    levels, rows, y, _ = wards
    assert list(levels) == ["W1", "W2", "W3"]
    for ward, level in levels.items():
        assert level.n == rows[ward].sum()
        assert level.events == y[rows[ward]].sum()
        assert level.event_rate == pytest.approx(y[rows[ward]].mean())
    assert levels["W1"].event_rate == 1.0 and levels["W2"].event_rate == 0.0


def test_level_without_events_shows_specificity_npv_brier_and_oe(wards):
    levels, rows, y, risk = wards
    level, mask = levels["W2"], rows["W2"]
    flagged = risk[mask] >= THRESHOLD
    n, n_flagged = int(mask.sum()), int(flagged.sum())
    assert 0 < n_flagged < n
    metrics = level.metrics
    assert level.note == "one outcome class (all non-events): AUROC and sensitivity undefined"

    assert metrics.specificity.estimate == pytest.approx((n - n_flagged) / n)
    assert metrics.specificity.ci95 == pytest.approx(wilson(n - n_flagged, n))
    assert metrics.specificity.ci_method == "wilson"
    assert metrics.npv.estimate == 1.0  # no events among the unflagged
    assert metrics.npv.ci95 == pytest.approx(wilson(n - n_flagged, n - n_flagged))
    assert metrics.ppv.estimate == 0.0 and metrics.ppv.ci95[1] > 0  # all flagged are false
    assert metrics.brier.estimate == pytest.approx(brier_score_loss(y[mask], risk[mask]))
    assert metrics.brier.ci95[0] < metrics.brier.ci95[1]

    assert metrics.sensitivity.estimate is None
    assert metrics.sensitivity.reason == "no events in these rows"
    assert metrics.auroc.estimate is None
    assert metrics.auroc.reason == (
        f"one outcome class (all {n} rows are non-events); it needs both"
    )
    # O:E is 0 (no events against the sum of risks), without a log-scale interval.
    assert metrics.oe_ratio.estimate == 0.0 and metrics.oe_ratio.ci95 == (None, None)
    assert metrics.oe_ratio.reason.startswith("no events observed")


def test_level_of_events_only_shows_sensitivity_ppv_and_oe(wards):
    levels, rows, _, risk = wards
    level, mask = levels["W1"], rows["W1"]
    n = int(mask.sum())
    n_flagged = int((risk[mask] >= THRESHOLD).sum())
    metrics = level.metrics
    assert level.note == "one outcome class (all events): AUROC and specificity undefined"
    assert metrics.sensitivity.estimate == pytest.approx(n_flagged / n)
    assert metrics.sensitivity.ci95 == pytest.approx(wilson(n_flagged, n))
    assert metrics.ppv.estimate == 1.0
    assert metrics.ppv.ci95 == pytest.approx(wilson(n_flagged, n_flagged))
    assert metrics.ppv.ci95[0] < 1.0  # never [1, 1]
    assert metrics.specificity.estimate is None
    assert metrics.specificity.reason == "no non-events in these rows"
    assert metrics.oe_ratio.estimate == pytest.approx(n / risk[mask].sum())
    assert metrics.oe_ratio.ci95[0] < metrics.oe_ratio.estimate < metrics.oe_ratio.ci95[1]


def test_subgroup_table_with_one_class_levels_is_valid_json(wards):
    levels, _, _, _ = wards
    for level in levels.values():
        json.loads(level.model_dump_json())  # NaN would not survive as JSON null
        for _, estimate in level.metrics:
            assert estimate is not None
            assert estimate.estimate is not None or estimate.reason, level.level

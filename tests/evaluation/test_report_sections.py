"""The report's sections on synthetic predictions: curves, decision curve, reliability,
subgroups and the model card each agree with scikit-learn or the textbook formula."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import auc, confusion_matrix, roc_auc_score

from medserve.errors import ConfigError
from medserve.evaluation import evaluate_predictions
from medserve.evaluation.curves import MAX_POINTS, confusion_counts, pr_points, roc_points
from medserve.evaluation.decision import THRESHOLD_GRID, decision_curve, net_benefit
from medserve.evaluation.model_card import (
    NOT_SUPPLIED,
    intended_use_section,
    read_model_card,
)
from medserve.evaluation.reliability import reliability
from medserve.evaluation.report import ReportOptions, performance_sections
from medserve.evaluation.subgroups import check_group_columns, group_levels, subgroup_table
from support.reports import lists_in, synthetic


@pytest.fixture(scope="module")
def data():
    return synthetic()


def test_roc_points_trace_the_auroc_and_stay_small(data):
    _, y, risk = data
    points = roc_points(y, risk)
    assert len(points["fpr"]) <= MAX_POINTS
    assert (points["fpr"][0], points["tpr"][0]) == (0.0, 0.0)
    assert (points["fpr"][-1], points["tpr"][-1]) == (1.0, 1.0)
    assert auc(points["fpr"], points["tpr"]) == pytest.approx(roc_auc_score(y, risk), abs=0.01)


def test_pr_points_and_confusion_counts_match_scikit_learn(data):
    _, y, risk = data
    pr = pr_points(y, risk)
    assert pr["prevalence"] == pytest.approx(y.mean())
    assert pr["recall"][0] == 1.0 and pr["recall"][-1] == 0.0
    counts = confusion_counts(y, risk, 0.4)
    tn, fp, fn, tp = confusion_matrix(y, risk >= 0.4).ravel()
    assert counts == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def test_net_benefit_is_the_textbook_formula(data):
    _, y, risk = data
    benefit = net_benefit(y, risk, THRESHOLD_GRID)
    for index in (0, 19, 49, 79):
        pt = THRESHOLD_GRID[index]
        flagged = risk >= pt
        tp, fp = int((flagged & (y == 1)).sum()), int((flagged & (y == 0)).sum())
        assert benefit[index] == pytest.approx(tp / len(y) - fp / len(y) * pt / (1 - pt))
    curve = decision_curve(y, risk)
    prevalence = y.mean()
    assert curve["treat_all"][0] == pytest.approx(
        prevalence - (1 - prevalence) * 0.01 / 0.99, abs=1e-5
    )
    assert set(curve["treat_none"]) == {0.0}
    # Near pt = 0 everyone is flagged: the model is treat-all.
    assert curve["model"][0] == pytest.approx(curve["treat_all"][0], abs=1e-4)


def test_reliability_bins_match_scikit_learn_and_oe_is_observed_over_expected(data):
    _, y, risk = data
    section = reliability(y, risk)
    bins = section["binned"]["bins"]
    observed, predicted = calibration_curve(y, risk, n_bins=len(bins), strategy="quantile")
    assert [b["observed"] for b in bins] == pytest.approx(observed, abs=1e-4)
    assert [b["mean_risk"] for b in bins] == pytest.approx(predicted, abs=1e-4)
    assert sum(b["n"] for b in bins) == len(y)
    assert all(b["ci95"][0] <= b["observed"] <= b["ci95"][1] for b in bins)
    assert section["oe_ratio"]["estimate"] == pytest.approx(y.sum() / risk.sum())
    smoothed = section["smoothed"]
    assert "LOWESS" in smoothed["method"]
    assert all(0 <= v <= 1 for v in smoothed["observed"])
    assert np.percentile(risk, 1) <= smoothed["risk"][0] < smoothed["risk"][-1]
    histogram = section["risk_histogram"]
    assert sum(histogram["events"]) == y.sum()
    assert sum(histogram["non_events"]) == len(y) - y.sum()


def test_subgroups_flag_small_and_one_class_levels(data):
    frame, y, risk = data
    table = subgroup_table(frame, y, risk, 0.4, ["site", "ward", "sex"])
    by_level = {
        (group.column, level.level): level for group in table.groups for level in group.levels
    }
    site_a = by_level[("site", "A")]
    assert site_a.judged and site_a.note is None
    mask = (frame["site"] == "A").to_numpy()
    expected = evaluate_predictions(y[mask], risk[mask], 0.4)
    assert site_a.metrics.auroc.model_dump(mode="json") == expected["auroc"].to_dict()
    small = by_level[("site", "C")]
    assert small.n == 20 and not small.judged
    assert small.note.startswith("too small to judge")
    assert small.metrics.auroc.estimate is not None  # defined, just uncertain
    one_class = by_level[("ward", "W2")]
    assert not one_class.judged and "one outcome class" in one_class.note
    # What one class defines is shown (tests/evaluation/test_subgroups.py); AUROC is not.
    assert one_class.metrics.auroc.estimate is None
    assert "one outcome class" in one_class.metrics.auroc.reason
    assert ("sex", "(missing)") in by_level
    assert [g.column for g in table.groups] == ["site", "ward", "sex"]


def test_many_valued_numbers_become_quartiles_in_order(data):
    frame, _, _ = data
    labels, levels, quartiles = group_levels(frame["age"])
    assert quartiles and len(levels) == 4
    assert levels[0].startswith("< ") and levels[-1].startswith("≥ ")
    assert set(labels) == set(levels)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (
            ["hospital"],
            "group column 'hospital' (the 'groups' option): data.csv has no such column",
        ),
        (["y"], "group column 'y' (the 'groups' option) is the outcome column"),
    ],
)
def test_unusable_group_columns_are_refused(groups, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_group_columns(groups, ["site", "y"], outcome="y", source="data.csv")


def test_a_group_with_too_many_levels_is_refused():
    ids = pd.Series([f"patient-{i}" for i in range(50)], name="mrn")
    with pytest.raises(
        ConfigError, match=r"group column 'mrn' \(the 'groups' option\) has 50 levels"
    ):
        group_levels(ids)


def test_model_card_is_read_and_command_line_text_wins(tmp_path):
    card_file = tmp_path / "card.yaml"
    card_file.write_text(
        "intended_use: Flag adults with chest pain.\nlimitations: Four sites, 1980s.\n"
    )
    card = read_model_card(card_file)
    assert card.limitations == ["Four sites, 1980s."]
    section = intended_use_section(card, None, "card.yaml")
    assert section.supplied and section.statement == "Flag adults with chest pain."
    overridden = intended_use_section(card, "Triage only.", "card.yaml")
    assert overridden.intended_use == "Triage only."
    assert overridden.source == "model card card.yaml and --intended-use"
    missing = intended_use_section(None, None)
    assert not missing.supplied and missing.statement == NOT_SUPPLIED


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("intended_use: [unclosed\n", "not valid YAML at line 2"),
        ("intended_use: ok\nintended_purpose: typo\n", "unknown key 'intended_purpose'"),
        ("- a list\n", "expected a mapping"),
        ("limitations: {a: 1}\n", "'limitations'"),
    ],
)
def test_bad_model_cards_give_one_clear_error(tmp_path, text, message):
    card_file = tmp_path / "card.yaml"
    card_file.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_model_card(card_file)


def test_a_missing_model_card_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        ReportOptions.build(
            groups=[],
            columns=["a"],
            outcome="a",
            source="d.csv",
            model_card=tmp_path / "absent.yaml",
        )


def test_performance_sections_hold_aggregates_only(data):
    frame, y, risk = data
    metrics = evaluate_predictions(y, risk, 0.4, n_resamples=200)
    sections = performance_sections(
        rows=frame,
        y=y,
        risk=risk,
        threshold=0.4,
        threshold_rule="fixed for the test",
        metrics=metrics,
        groups=["site"],
    )
    assert set(sections.model_dump()) == {
        "evaluated_rows",
        "discrimination",
        "classification",
        "calibration",
        "decision_curve",
        "subgroups",
    }
    confusion = sections.classification.confusion
    assert confusion.tp + confusion.fn == int(y.sum())
    assert not any(len(values) >= len(y) for values in lists_in(sections.model_dump(mode="json")))

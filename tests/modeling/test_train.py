import numpy as np
import pytest
from sklearn.metrics import recall_score, roc_auc_score

from medserve.errors import ConfigError, DataError
from medserve.modeling import ThresholdRule, TrainOptions, make_pipeline, train_model
from medserve.modeling.train import CandidateResult, select, split_rows


@pytest.mark.parametrize("family", ["logistic", "lightgbm", "mlp"])
def test_each_family_learns_heart_disease(heart, heart_schema, family):
    options = TrainOptions(family=family, cv=3, validation="holdout")
    result = train_model(heart, heart_schema, options)
    risk = result.model.predict_risk(result.split.test)
    assert risk.shape == (len(result.split.test),)
    assert np.all((risk >= 0) & (risk <= 1))
    assert roc_auc_score(result.split.y_test, risk) > 0.85
    assert result.model.family == family
    assert 0 < result.model.threshold < 1


def test_auto_compares_families_and_selects_one_by_cv(heart, heart_schema):
    result = train_model(heart, heart_schema, TrainOptions(family="auto", cv=3))
    candidates = [row.family for row in result.leaderboard]
    # Each capacity of LightGBM is a candidate of its own, and the blend of them all last.
    assert candidates[:2] == ["logistic", "lightgbm (4 leaves)"]
    assert candidates[-1] == "blend" and len(candidates) >= 4
    selected = [row for row in result.leaderboard if row.selected]
    assert len(selected) == 1 and selected[0].family == result.model.info["candidate"]
    assert result.model.family == ("blend" if selected[0].family == "blend" else "logistic") or (
        selected[0].family.startswith(result.model.family)
    )
    best = max(row.auroc_mean for row in result.leaderboard if row.error is None)
    assert selected[0].auroc_mean >= best - 0.002


def test_preprocessing_is_fitted_on_the_training_split_only(heart, heart_schema):
    options = TrainOptions(family="logistic", cv=3, validation="holdout")
    result = train_model(heart, heart_schema, options)
    imputer = result.model.pipeline.named_steps["preprocess"].named_transformers_["numeric"][
        "impute"
    ]
    numeric = [c.name for c in heart_schema.features if c.numeric_encoded]
    train_medians = heart_schema.prepare(result.split.train)[numeric].median().to_numpy()
    everything_medians = heart_schema.prepare(heart)[numeric].median().to_numpy()
    np.testing.assert_allclose(imputer.statistics_, train_medians)
    assert not np.allclose(imputer.statistics_, everything_medians)


def test_sensitivity_target_threshold_reaches_the_target_out_of_fold(heart, heart_schema):
    rule = ThresholdRule.parse("sensitivity=0.90")
    result = train_model(
        heart, heart_schema, TrainOptions(family="logistic", cv=3, threshold_rule=rule)
    )
    train_labels = result.model.predict(result.split.train)
    assert recall_score(result.split.y_train, train_labels) >= 0.88
    assert "sensitivity ≥ 0.90" in result.model.threshold_rule


def test_unseen_and_missing_values_at_predict_time_are_scored(heart, heart_schema):
    result = train_model(heart, heart_schema, TrainOptions(family="lightgbm", cv=3))
    rows = heart.head(3).copy()
    rows["cp"] = ["martian angina", None, "typical angina"]
    rows["chol"] = [None, "0", "250"]
    risk = result.model.predict_risk(rows)
    assert np.all(np.isfinite(risk))


def test_mlp_default_is_the_reference_architecture(heart_schema):
    pipeline = make_pipeline("mlp", heart_schema)
    assert pipeline.named_steps["model"].hidden == (64, 32)
    transformers = {name: step for name, step, _ in pipeline.named_steps["preprocess"].transformers}
    assert "scale" in transformers["numeric"].named_steps


def test_too_few_events_is_explained(heart, heart_schema):
    tiny = heart.iloc[:200]
    labels = heart_schema.outcome.binarise(tiny["num"])
    keep = np.r_[np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)[:6]]
    with pytest.raises(DataError, match="only 6 rows in the smaller outcome class"):
        split_rows(tiny.iloc[keep], heart_schema, TrainOptions())


def test_folds_are_reduced_with_a_notice_when_events_are_scarce(heart, heart_schema):
    labels = heart_schema.outcome.binarise(heart["num"])
    keep = np.r_[np.flatnonzero(labels == 0)[:300], np.flatnonzero(labels == 1)[:12]]
    result = train_model(heart.iloc[keep], heart_schema, TrainOptions(family="logistic", cv=20))
    assert result.model.info["cv_folds"] < 20
    assert any("reduced to" in notice for notice in result.notices)


def test_unknown_family_is_rejected(heart, heart_schema):
    with pytest.raises(ConfigError, match="unknown model family 'forest'"):
        train_model(heart, heart_schema, TrainOptions(family="forest"))


def test_ties_on_auroc_are_broken_by_log_loss():
    rows = [
        CandidateResult("logistic", auroc_mean=0.900, log_loss=0.40),
        CandidateResult("lightgbm", auroc_mean=0.901, log_loss=0.45),
        CandidateResult("mlp", auroc_mean=0.880, log_loss=0.30),
    ]
    assert select(rows).family == "logistic"
    rows[1].auroc_mean = 0.95
    assert select(rows).family == "lightgbm"


def test_auto_can_choose_among_the_families_named(heart, heart_schema):
    result = train_model(heart, heart_schema, TrainOptions(family="logistic, lightgbm", cv=3))
    candidates = [row.family for row in result.leaderboard]
    assert candidates[0] == "logistic" and candidates[-1] == "blend"
    assert all(c.startswith("lightgbm (") for c in candidates[1:-1])
    assert result.model.family in {"logistic", "lightgbm", "blend"}


@pytest.mark.parametrize("family", ["logistic,nope", "logistic,", "mlp,,lightgbm"])
def test_a_family_list_naming_an_unknown_family_is_refused(family):
    with pytest.raises(ConfigError, match="unknown model family"):
        TrainOptions(family=family).candidates()


def rows(**scores: tuple[float, float, float]) -> list[CandidateResult]:
    return [
        CandidateResult(family=name, auroc_mean=auroc, log_loss=loss, brier=brier)
        for name, (auroc, loss, brier) in scores.items()
    ]


def test_the_selection_metric_decides_which_family_is_kept():
    leaderboard = rows(a=(0.90, 0.40, 0.14), b=(0.85, 0.35, 0.12), c=(0.80, 0.30, 0.13))
    assert select(leaderboard, "auroc").family == "a"
    assert select(leaderboard, "brier").family == "b"
    assert select(leaderboard, "logloss").family == "c"
    with pytest.raises(ConfigError, match="unknown selection metric 'f1'"):
        TrainOptions(metric="f1")


def test_the_one_standard_error_rule_prefers_the_simplest_candidate_within_the_noise():
    leaderboard = [
        CandidateResult("logistic", auroc_mean=0.800, auroc_sd=0.05, log_loss=0.50),
        CandidateResult("lightgbm (4 leaves)", auroc_mean=0.820, auroc_sd=0.04, log_loss=0.49),
        CandidateResult("blend", auroc_mean=0.830, auroc_sd=0.05, log_loss=0.48),
    ]
    assert select(leaderboard).family == "blend"
    # One standard error of the best: 0.05 / √5 = 0.022, so the floor is 0.808.
    assert select(leaderboard, folds=5).family == "lightgbm (4 leaves)"
    leaderboard[0].auroc_mean = 0.810
    assert select(leaderboard, folds=5).family == "logistic"

"""Internal validation (holdout, cv, bootstrap), the time limit, and the sample-size rule,
on the bundled Cleveland/Hungary/Switzerland/VA heart table."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medserve.data import infer_schema
from medserve.errors import ConfigError, DataError
from medserve.modeling import TrainOptions, train_model
from medserve.modeling.train import labelled_rows


def numeric_medians(model, schema, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    imputer = model.pipeline.named_steps["preprocess"].named_transformers_["numeric"]["impute"]
    numeric = [c.name for c in schema.features if c.numeric_encoded]
    return imputer.statistics_, schema.prepare(frame)[numeric].median().to_numpy()


def test_cv_measures_every_row_out_of_fold_and_refits_on_all_of_them(heart, heart_schema):
    result = train_model(heart, heart_schema, TrainOptions(family="logistic", cv=3))
    rows, labels, _ = labelled_rows(heart, heart_schema)
    validation = result.validation
    assert validation.method == "cv" and validation.n_final == len(rows) == len(validation.y)
    np.testing.assert_array_equal(validation.y, labels)
    # The final model saw every row (its imputer's medians are those of the whole table) ...
    fitted, everything = numeric_medians(result.model, heart_schema, rows)
    np.testing.assert_allclose(fitted, everything)
    # ... and the figures are not its risks on rows it saw, but out-of-fold ones.
    apparent = result.model.predict_risk(rows)
    assert not np.allclose(validation.risk, apparent)
    assert roc_auc_score(labels, validation.risk) < roc_auc_score(labels, apparent)
    assert len(result.split.test) == 0


def test_holdout_keeps_the_test_split_out_of_the_final_model(heart, heart_schema):
    options = TrainOptions(family="logistic", cv=3, validation="holdout", test_size=0.25)
    result = train_model(heart, heart_schema, options)
    validation = result.validation
    assert validation.method == "holdout" and len(validation.y) == len(result.split.test)
    assert validation.n_final == len(result.split.train)
    np.testing.assert_allclose(validation.risk, result.model.predict_risk(result.split.test))
    fitted, train_medians = numeric_medians(result.model, heart_schema, result.split.train)
    np.testing.assert_allclose(fitted, train_medians)


def test_bootstrap_subtracts_the_optimism_from_the_apparent_performance(heart, heart_schema):
    options = TrainOptions(family="lightgbm", cv=3, validation="bootstrap", resamples=8)
    result = train_model(heart, heart_schema, options)
    validation = result.validation
    assert validation.method == "bootstrap" and validation.resamples == 8
    rows, labels, _ = labelled_rows(heart, heart_schema)
    by_metric = {row.metric: row for row in validation.optimism}
    assert set(by_metric) == {"auroc", "brier", "calibration_slope"}
    auroc = by_metric["auroc"]
    assert auroc.apparent == pytest.approx(roc_auc_score(labels, result.model.predict_risk(rows)))
    # Trees fitted on a resample do better on it than on the original rows.
    assert auroc.optimism > 0 and auroc.corrected == pytest.approx(auroc.apparent - auroc.optimism)
    assert by_metric["brier"].optimism < 0  # a lower Brier on the rows it was fitted on


def test_bootstrap_on_a_table_too_small_to_resample_says_why(heart, heart_schema):
    rows, labels, _ = labelled_rows(heart, heart_schema)
    few = pd.concat([rows[labels == 1].head(15), rows[labels == 0].head(60)])
    with pytest.raises(DataError, match="too small to bootstrap.*15 rows.*at least 20"):
        train_model(few, heart_schema, TrainOptions(validation="bootstrap"))


def test_an_unknown_validation_method_names_the_choices():
    with pytest.raises(ConfigError, match="unknown validation method 'loo'.*holdout, cv, boot"):
        TrainOptions(validation="loo")


@pytest.mark.parametrize("seconds", [0, -5])
def test_a_time_limit_must_be_positive(seconds):
    with pytest.raises(ConfigError, match="must be more than 0 seconds"):
        TrainOptions(time_limit=seconds)


def test_a_time_limit_too_short_to_fit_anything_is_a_clear_error(heart, heart_schema):
    with pytest.raises(ConfigError, match="too short to fit any model; logistic needed"):
        train_model(heart, heart_schema, TrainOptions(cv=3, time_limit=1e-6))


def test_the_time_limit_skips_candidates_not_started(heart, heart_schema, monkeypatch):
    """Once logistic has cross-validated, the limit is reached: the others are skipped and
    the model is the one that finished."""
    from medserve.modeling import search

    spent = iter([False, False, False] + [True] * 100)  # logistic's 3 folds, then no time
    monkeypatch.setattr(search.Budget, "spent", property(lambda self: next(spent)))
    result = train_model(heart, heart_schema, TrainOptions(cv=3, time_limit=30))
    rows = {row.family: row for row in result.leaderboard}
    assert rows["logistic"].error is None and rows["logistic"].selected
    skipped = [row for name, row in rows.items() if name != "logistic"]
    assert skipped and all("skipped: the time limit" in (r.error or "") for r in skipped)
    assert result.model.family == "logistic"


def test_a_table_short_of_the_minimum_sample_size_makes_auto_prefer_the_simpler_model():
    """Riley et al.'s minimum: 150 rows with 30 noisy numeric predictors fall short, so
    auto takes the simplest candidate within one standard error of the best, and says so."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(150, 30)), columns=[f"x{i}" for i in range(30)])
    frame["event"] = (frame.x0 + rng.normal(size=150) > 0.8).astype(int)
    schema = infer_schema(frame, target="event")
    result = train_model(frame, schema, TrainOptions(cv=3))
    assert result.sample_size is not None and not result.sample_size.meets
    assert "one-standard-error rule" in result.sample_size_consequence
    assert any(notice.startswith("Sample size: ") for notice in result.notices)
    usable = [row for row in result.leaderboard if row.error is None]
    best = max(usable, key=lambda row: row.auroc_mean)
    chosen = next(row for row in usable if row.selected)
    assert chosen is usable[0] or chosen.auroc_mean >= best.auroc_mean - best.auroc_sd / 3**0.5
    assert [r for r in usable if r.auroc_mean >= best.auroc_mean - best.auroc_sd / 3**0.5][
        0
    ] is chosen


@pytest.mark.parametrize("family", ["logistic", "lightgbm"])
def test_bootstrap_refits_keep_the_settings_the_fit_chose(heart, heart_schema, family):
    """Resamples repeat rows, so an early-stopping split or an inner CV would hold copies
    of the rows it fits: refits use the tree count or L2 strength of the original fit."""
    from medserve.modeling.families import refit_twin

    model = train_model(heart, heart_schema, TrainOptions(family=family, cv=3)).model
    twin = refit_twin(model)
    estimator = twin.named_steps["model"]
    if family == "lightgbm":
        assert estimator.max_trees == model.pipeline.named_steps["model"].n_trees_
        assert estimator.validation_fraction == 0
    else:
        assert estimator.C == pytest.approx(float(model.pipeline.named_steps["model"].C_[0]))
        assert not hasattr(estimator, "Cs")  # a plain LogisticRegression: no inner CV
    rows, labels, _ = labelled_rows(heart, heart_schema)
    refitted = twin.fit(heart_schema.prepare(rows), labels)  # unfitted until now
    assert np.allclose(refitted.predict_proba(heart_schema.prepare(rows))[:, 1],
                       model.pipeline.predict_proba(heart_schema.prepare(rows))[:, 1],
                       atol=0.05)  # fmt: skip


def test_bootstrap_refuses_the_ebm_before_fitting_anything(heart, heart_schema, monkeypatch):
    from medserve.modeling import search

    def fit_nothing(*args, **kwargs):
        raise AssertionError("nothing is fitted before the refusal")

    monkeypatch.setattr(search, "cross_validate", fit_nothing)
    with pytest.raises(ConfigError, match="EBM cannot be refitted on bootstrap.*use.*cv"):
        train_model(heart, heart_schema, TrainOptions(family="ebm", validation="bootstrap"))


def test_a_table_without_signal_is_no_blend_of_nothing():
    """Noise: every blend weight would be 0; auto keeps a real candidate instead."""
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.normal(size=(120, 2)), columns=["a", "b"])
    frame["y"] = (rng.random(120) < 0.3).astype(int)
    result = train_model(frame, infer_schema(frame, target="y"), TrainOptions(cv=3))
    assert result.model.family in {"logistic", "lightgbm"}
    assert (
        0 <= result.model.predict_risk(frame).min() <= result.model.predict_risk(frame).max() <= 1
    )


def test_cv_measures_recalibration_out_of_fold_too(heart, heart_schema, monkeypatch):
    """Where Platt scaling is kept, the out-of-fold figures use scalers fitted on the other
    folds: the scaler fitted on all out-of-fold risks would be measured on its own rows."""
    from medserve.modeling import recalibration
    from medserve.modeling.recalibration import apply_recalibration

    monkeypatch.setattr(recalibration, "MIN_RELATIVE_GAIN", -10.0)  # Platt always kept
    result = train_model(heart, heart_schema, TrainOptions(family="lightgbm", cv=3))
    chosen = next(row for row in result.leaderboard if row.selected)
    assert result.model.calibrator is not None
    in_sample = apply_recalibration(result.model.calibrator, chosen.oof_risk)
    assert not np.allclose(result.validation.risk, in_sample)
    assert np.corrcoef(result.validation.risk, in_sample)[0, 1] > 0.99  # the same model


def test_bootstrap_refits_are_recalibrated_as_the_final_model_is(heart, heart_schema, monkeypatch):
    from medserve.modeling import recalibration, train
    from medserve.modeling.recalibration import apply_recalibration

    monkeypatch.setattr(recalibration, "MIN_RELATIVE_GAIN", -10.0)
    seen = []
    real = train.bootstrap_optimism

    def spy(pipeline, recalibrate, *args, **kwargs):
        seen.append(recalibrate)
        return real(pipeline, recalibrate, *args, **kwargs)

    monkeypatch.setattr(train, "bootstrap_optimism", spy)
    options = TrainOptions(family="logistic", cv=3, validation="bootstrap", resamples=3)
    result = train_model(heart, heart_schema, options)
    risk = np.linspace(0.05, 0.95, 7)
    np.testing.assert_allclose(seen[0](risk), apply_recalibration(result.model.calibrator, risk))


def test_the_test_size_is_checked_only_where_a_split_is_held_out(heart, heart_schema):
    from medserve.modeling.train import split_rows

    split, _ = split_rows(heart, heart_schema, TrainOptions(validation="cv", test_size=0.9))
    assert len(split.test) == 0 and len(split.train) == len(heart)
    with pytest.raises(ConfigError, match="test size 0.9"):
        split_rows(heart, heart_schema, TrainOptions(validation="holdout", test_size=0.9))

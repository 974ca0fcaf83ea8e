"""Training: split, cross-validate candidate families, select, recalibrate, pick the
threshold on out-of-fold predictions, refit on the whole training split."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from medserve.data.schema import Schema
from medserve.errors import ConfigError, DataError, option
from medserve.modeling.families import (
    AUTO,
    auto_candidates,
    family_names,
    find_family,
    make_pipeline,
)
from medserve.modeling.model import BACKGROUND_ROWS, TrainedModel
from medserve.modeling.recalibration import apply_recalibration, fit_recalibration
from medserve.modeling.threshold import ThresholdRule, choose_threshold

# (what is happening, steps done, steps in all) — the CLI draws it as a progress bar.
Progress = Callable[[str, int, int], None]
# Mean CV AUROCs closer than this are a tie, broken by log-loss.
AUROC_TIE = 0.002
MIN_EVENTS = 10


# How cross-validated candidates are ranked: AUROC (higher; near-ties broken by log-loss),
# or a proper score, lower being better.
SELECTION_METRICS = ("auroc", "brier", "logloss")


@dataclass
class TrainOptions:
    family: str = "auto"  # a family, "auto", or families to choose from: "logistic,lightgbm"
    seed: int = 0
    test_size: float = 0.2
    cv: int = 5
    threshold_rule: ThresholdRule = field(default_factory=ThresholdRule)
    metric: str = "auroc"

    def __post_init__(self) -> None:
        if self.metric not in SELECTION_METRICS:
            raise ConfigError(
                f"unknown selection metric '{self.metric}' ({option('metric')}); choose one "
                f"of {', '.join(SELECTION_METRICS)}"
            )

    def candidates(self) -> tuple[str, ...]:
        if self.family == AUTO:
            return auto_candidates()
        chosen = tuple(dict.fromkeys(part.strip() for part in self.family.split(",")))
        unknown = [name for name in chosen if find_family(name) is None]
        if unknown or not all(chosen):
            raise ConfigError(
                f"unknown model family '{(unknown or [''])[0]}' ({option('family')}); choose "
                f"{AUTO}, one of {', '.join(family_names())}, or several joined by commas"
            )
        return chosen


@dataclass
class CandidateResult:
    family: str
    auroc_mean: float = float("nan")
    auroc_sd: float = float("nan")
    log_loss: float = float("nan")
    brier: float = float("nan")
    fit_seconds: float = 0.0
    selected: bool = False
    error: str | None = None
    oof_risk: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        row = {k: v for k, v in self.__dict__.items() if k != "oof_risk"}
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}


@dataclass
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray


@dataclass
class TrainResult:
    model: TrainedModel
    leaderboard: list[CandidateResult]
    split: Split
    notices: list[str]


def labelled_rows(frame: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Rows with a known outcome and their 0/1 labels; also how many rows were dropped."""
    assert schema.outcome is not None
    target = frame[schema.outcome.column]
    known = target.notna().to_numpy()
    kept = frame.loc[known]
    return kept, schema.outcome.binarise(target[known]), int((~known).sum())


def split_rows(
    frame: pd.DataFrame, schema: Schema, options: TrainOptions
) -> tuple[Split, list[str]]:
    notices: list[str] = []
    rows, labels, dropped = labelled_rows(frame, schema)
    if dropped:
        notices.append(f"{dropped} rows without an outcome were left out")
    minority = int(min(labels.sum(), len(labels) - labels.sum()))
    if minority < MIN_EVENTS:
        raise DataError(
            f"only {minority} rows in the smaller outcome class; medserve needs at least "
            f"{MIN_EVENTS} to hold out a test split and cross-validate"
        )
    if not 0.05 <= options.test_size <= 0.5:
        raise ConfigError(
            f"test size {options.test_size} ({option('test_size')}) must lie between 0.05 and 0.5"
        )
    # Every labelled value read once in the table's order, so that an error names the row
    # of the file ("row 4": its 4th data row), not a position in the shuffled split.
    assert schema.outcome is not None
    known = frame[schema.outcome.column].notna().to_numpy()
    schema.prepare(rows, row_numbers=np.flatnonzero(known) + 1)
    train, test, y_train, y_test = train_test_split(
        rows, labels, test_size=options.test_size, stratify=labels, random_state=options.seed
    )
    return Split(train, test, np.asarray(y_train), np.asarray(y_test)), notices


def folds_for(y: np.ndarray, requested: int, notices: list[str]) -> int:
    if requested < 2:
        raise ConfigError(
            f"{option('cv')} is {requested}, but cross-validation needs at least 2 folds"
        )
    minority = int(min(y.sum(), len(y) - y.sum()))
    if minority < requested:
        notices.append(
            f"--cv {requested} reduced to {minority} folds: the training split has only "
            f"{minority} rows in its smaller outcome class"
        )
        return max(2, minority)
    return requested


def cross_validate_family(
    family: str, schema: Schema, X: pd.DataFrame, y: np.ndarray, splitter, seed: int, tick
) -> CandidateResult:
    result = CandidateResult(family=family)
    oof = np.zeros(len(y))
    fold_auroc = []
    start = time.perf_counter()
    try:
        for train_index, valid_index in splitter.split(X, y):
            pipeline = clone(make_pipeline(family, schema, seed=seed))
            # Warnings (a solver that did not converge) reach the caller: they are information.
            pipeline.fit(X.iloc[train_index], y[train_index])
            oof[valid_index] = pipeline.predict_proba(X.iloc[valid_index])[:, 1]
            fold_auroc.append(roc_auc_score(y[valid_index], oof[valid_index]))
            tick(f"cross-validating {family}")
    except (ValueError, RuntimeError, MemoryError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.fit_seconds = (time.perf_counter() - start) / max(len(fold_auroc), 1)
    result.auroc_mean = float(np.mean(fold_auroc))
    result.auroc_sd = float(np.std(fold_auroc))
    result.log_loss = float(log_loss(y, np.clip(oof, 1e-7, 1 - 1e-7)))
    result.brier = float(brier_score_loss(y, oof))
    result.oof_risk = oof
    return result


def select(results: list[CandidateResult], metric: str = "auroc") -> CandidateResult:
    usable = [r for r in results if r.error is None]
    if not usable:
        reasons = "; ".join(f"{r.family}: {r.error}" for r in results)
        raise DataError(f"no model family could be trained ({reasons})")
    if metric == "brier":
        return min(usable, key=lambda r: r.brier)
    if metric == "logloss":
        return min(usable, key=lambda r: r.log_loss)
    best_auroc = max(r.auroc_mean for r in usable)
    tied = [r for r in usable if best_auroc - r.auroc_mean <= AUROC_TIE]
    return min(tied, key=lambda r: r.log_loss)


def train_model(
    frame: pd.DataFrame,
    schema: Schema,
    options: TrainOptions,
    progress: Progress | None = None,
) -> TrainResult:
    """Train and select a model on the training split; the test split is left untouched."""
    candidates = options.candidates()
    split, notices = split_rows(frame, schema, options)
    X = schema.prepare(split.train)
    y = split.y_train
    folds = folds_for(y, options.cv, notices)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=options.seed)
    total = len(candidates) * folds + 1
    done = 0

    def tick(what: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(what, done, total)

    leaderboard = [
        cross_validate_family(family, schema, X, y, splitter, options.seed, tick)
        for family in candidates
    ]
    if len(candidates) == 1 and leaderboard[0].error:
        raise DataError(f"{candidates[0]} could not be trained: {leaderboard[0].error}")
    chosen = select(leaderboard, options.metric)
    chosen.selected = True
    calibrator, calibration = fit_recalibration(y, chosen.oof_risk, folds=folds, seed=options.seed)
    oof_risk = apply_recalibration(calibrator, chosen.oof_risk)
    threshold = choose_threshold(y, oof_risk, options.threshold_rule)

    pipeline = clone(make_pipeline(chosen.family, schema, seed=options.seed))
    pipeline.fit(X, y)
    tick(f"refitting {chosen.family} on the training split")
    model = TrainedModel(
        family=chosen.family,
        schema=schema,
        pipeline=pipeline,
        threshold=threshold,
        threshold_rule=options.threshold_rule.describe(),
        calibrator=calibrator,
        info={"calibration": calibration, "cv_folds": folds},
        background=X.sample(n=min(BACKGROUND_ROWS, len(X)), random_state=options.seed),
    )
    return TrainResult(model=model, leaderboard=leaderboard, split=split, notices=notices)

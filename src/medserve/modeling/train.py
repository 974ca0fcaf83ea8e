"""Training: cross-validate the candidates (``search``), blend and select, recalibrate,
pick the threshold on out-of-fold predictions, refit, and validate internally
(``validation``: a held-out split, the out-of-fold predictions, or the bootstrap)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits

from medserve.data.schema import Schema
from medserve.errors import ConfigError, DataError, option
from medserve.modeling.families import (
    AUTO,
    Freezable,
    auto_candidates,
    family_names,
    find_family,
    get_family,
    reads_text,
    refit_twin,
)
from medserve.modeling.model import BACKGROUND_ROWS, TrainedModel
from medserve.modeling.parallel import Parallel
from medserve.modeling.recalibration import apply_recalibration, fit_recalibration
from medserve.modeling.sample_size import (
    SampleSizeCheck,
    candidate_parameters,
    r2_cs_out_of_fold,
    sample_size_check,
)
from medserve.modeling.search import (
    AUROC_TIE,
    SELECTION_METRICS,
    Budget,
    Candidate,
    CandidateResult,
    Search,
    blend_candidates,
    check_time_limit,
    expand,
    inputs_encoder,
    out_of_time,
    select,
    unfitted_model,
)
from medserve.modeling.threshold import ThresholdRule, choose_threshold
from medserve.modeling.validation import (
    BOOTSTRAP_RESAMPLES,
    DEFAULT_VALIDATION,
    Validation,
    bootstrap_optimism,
    check_bootstrappable,
    check_method,
)

__all__ = [
    "AUROC_TIE",
    "MIN_EVENTS",
    "SELECTION_METRICS",
    "CandidateResult",
    "Progress",
    "Split",
    "TrainOptions",
    "TrainResult",
    "labelled_rows",
    "select",
    "split_rows",
    "train_model",
]

# (what is happening, steps done, steps in all) — the CLI draws it as a progress bar.
Progress = Callable[[str, int, int], None]
MIN_EVENTS = 10
SELECTION_RULES = {
    "auroc": "mean cross-validated AUROC (near-ties within 0.002 broken by log-loss)",
    "brier": "out-of-fold Brier score",
    "logloss": "out-of-fold log-loss",
}
# The search's time limit unless one is given (seconds): the candidates that have not
# started when it is reached are skipped.
DEFAULT_TIME_LIMIT = 120.0


@dataclass
class TrainOptions:
    family: str = "auto"  # a family, "auto", or families to choose from: "logistic,lightgbm"
    seed: int = 0
    test_size: float = 0.2
    cv: int = 5
    threshold_rule: ThresholdRule = field(default_factory=ThresholdRule)
    metric: str = "auroc"
    validation: str = DEFAULT_VALIDATION
    time_limit: float | None = DEFAULT_TIME_LIMIT
    resamples: int = BOOTSTRAP_RESAMPLES

    def __post_init__(self) -> None:
        if self.metric not in SELECTION_METRICS:
            raise ConfigError(
                f"unknown selection metric '{self.metric}' ({option('metric')}); choose one "
                f"of {', '.join(SELECTION_METRICS)}"
            )
        check_method(self.validation)
        check_time_limit(self.time_limit)

    def candidates(self, schema: Schema | None = None) -> tuple[str, ...]:
        """The families to cross-validate on a table of ``schema``."""
        if self.family == AUTO:
            return auto_candidates(schema)
        chosen = tuple(dict.fromkeys(part.strip() for part in self.family.split(",")))
        unknown = [name for name in chosen if find_family(name) is None]
        if unknown or not all(chosen):
            raise ConfigError(
                f"unknown model family '{(unknown or [''])[0]}' ({option('family')}); choose "
                f"{AUTO}, one of {', '.join(family_names())}, or several joined by commas"
            )
        return chosen


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
    validation: Validation | None = None
    sample_size: SampleSizeCheck | None = None
    # What training did about the sample size (None: nothing).
    sample_size_consequence: str | None = None
    # How the candidates were ranked, in words (for the report).
    selection: str = ""


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
    """The labelled rows, split for ``holdout`` (all of them as the training split for the
    other methods, with an empty test split)."""
    notices: list[str] = []
    rows, labels, dropped = labelled_rows(frame, schema)
    if dropped:
        notices.append(f"{dropped} rows without an outcome were left out")
    minority = int(min(labels.sum(), len(labels) - labels.sum()))
    if minority < MIN_EVENTS:
        raise DataError(
            f"only {minority} rows in the smaller outcome class; medserve needs at least "
            f"{MIN_EVENTS} to cross-validate and measure a model"
        )
    if options.validation == "holdout" and not 0.05 <= options.test_size <= 0.5:
        raise ConfigError(
            f"test size {options.test_size} ({option('test_size')}) must lie between 0.05 and 0.5"
        )
    # Every labelled value read once in the table's order, so that an error names the row
    # of the file ("row 4": its 4th data row), not a position in the shuffled split.
    assert schema.outcome is not None
    known = frame[schema.outcome.column].notna().to_numpy()
    schema.prepare(rows, row_numbers=np.flatnonzero(known) + 1)
    if options.validation != "holdout":
        return Split(rows, rows.iloc[:0], np.asarray(labels), labels[:0]), notices
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
            f"{option('cv')} {requested} reduced to {minority} folds: the training rows have "
            f"only {minority} in their smaller outcome class"
        )
        return max(2, minority)
    return requested


def check_reads(families: tuple[str, ...], schema: Schema) -> None:
    """ConfigError where the families and the table's notes do not meet: a family that
    reads notes on a table without a text feature, or notes no family would read."""
    notes = [spec.name for spec in schema.features if spec.type == "text"]
    readers = [name for name in families if reads_text(name)]
    if readers and not notes:
        raise ConfigError(
            f"the {readers[0]} family reads notes, and the table has no text feature; name "
            f"the notes column with {option('text')}"
        )
    if notes and not readers:
        raise ConfigError(
            f"'{notes[0]}' is a text feature, and {', '.join(families)} reads no notes; "
            f"choose {option('family')} {AUTO} or text, or leave out {option('text')}"
        )


def notes_left_out(schema: Schema, families: set[str]) -> tuple[Schema, str | None]:
    """The final model's schema: its text features kept only when a family it is made of
    reads notes (otherwise it would ask for notes it never reads), and the notice."""
    notes = [spec.name for spec in schema.features if spec.type == "text"]
    if not notes or any(reads_text(name) for name in families):
        return schema, None
    columns = [
        spec.model_copy(update={"role": "text"}) if spec.name in notes else spec
        for spec in schema.columns
    ]
    notice = (
        f"notes: the chosen model reads no notes (the tabular candidates did as well or "
        f"better on the folds), so {', '.join(repr(n) for n in notes)} is not a feature of it"
    )
    return schema.model_copy(update={"columns": columns}), notice


def _check_refittable(candidates: list[Candidate], schema: Schema, seed: int) -> None:
    """Before any fitting: every candidate can be refitted on bootstrap resamples with its
    settings fixed (a family that cannot says so with a ConfigError)."""
    for candidate in candidates:
        family = get_family(candidate.family)
        if isinstance(family, Freezable):
            family.frozen(candidate.build(schema, seed))


def train_model(
    frame: pd.DataFrame,
    schema: Schema,
    options: TrainOptions,
    progress: Progress | None = None,
    *,
    parallel: Parallel | None = None,
) -> TrainResult:
    """Search, select and refit a model; validate it as ``options.validation`` says. With
    ``parallel``, the search's fits run through it (``modeling.search``): the same model,
    leaderboard and report, sooner where it has more CPUs.

    BLAS runs on one thread meanwhile: clinical tables make small matrices, for which
    threads cost more than they give, and on a busy host they contend (a logistic fit on
    the heart table: 8.5 s with two BLAS threads beside other work, 0.4 s with one)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _train(frame, schema, options, progress, parallel)


def _train(
    frame: pd.DataFrame,
    schema: Schema,
    options: TrainOptions,
    progress: Progress | None,
    parallel: Parallel | None = None,
) -> TrainResult:
    families = options.candidates(schema)
    check_reads(families, schema)
    split, notices = split_rows(frame, schema, options)
    X = schema.prepare(split.train)
    y = split.y_train
    if options.validation == "bootstrap":
        check_bootstrappable(y)
    n_folds = folds_for(y, options.cv, notices)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=options.seed)
    folds = list(splitter.split(X, y))
    resamples = options.resamples if options.validation == "bootstrap" else 0
    for name in families:  # inputs computed once for every fold (the notes' embeddings)
        encode_inputs = inputs_encoder(name)
        if encode_inputs is not None:
            encode_inputs(X, schema, progress)
    search = Search(
        schema,
        X,
        y,
        folds,
        options.seed,
        Budget(options.time_limit),
        progress,
        extra_steps=1 + resamples,
        parallel=parallel,
    )
    candidates = expand(families, len(y))
    if options.validation == "bootstrap":
        _check_refittable(candidates, schema, options.seed)

    # The simplest candidate first: its fit tells the sample-size check what R² to expect.
    leaderboard = search.run(candidates[:1])
    check = sample_size_check(
        candidate_parameters(schema),
        len(y),
        int(y.sum()),
        r2_cs=r2_cs_out_of_fold(leaderboard[0].log_loss, y) if leaderboard[0].usable else None,
        r2_source=f"estimated: the out-of-fold Cox-Snell R² of {leaderboard[0].family}",
    )
    consequence = None
    shortfall = check.shortfall_notice()
    if shortfall:
        notices.append(shortfall)
        if options.family == AUTO and options.metric == "auroc":
            # Every candidate is still tried: a flexible model that is better by more than
            # the folds' noise still wins (a large table with a weak linear signal).
            consequence = (
                "auto chose the simplest candidate whose cross-validated AUROC is within one "
                "standard error of the best (the one-standard-error rule)"
            )
            notices.append(consequence)
    leaderboard += search.run(candidates[1:])
    if not any(r.usable for r in leaderboard):
        if any("time limit" in (r.error or "") for r in leaderboard):
            raise out_of_time(leaderboard, search.budget)
        if len(families) == 1:
            raise DataError(f"{families[0]} could not be trained: {leaderboard[0].error}")
    # A blend when several families are tried (every finished candidate, capacities of
    # one family included, may take weight); variants of a single family only compete.
    several = len({c.family for c in candidates}) > 1
    blend = blend_candidates(leaderboard, y, folds) if several else None
    if blend is not None:
        leaderboard.append(blend)
    # Short of the minimum sample size, auto prefers the simpler model unless a more
    # complex one is better by more than the folds' noise.
    chosen = select(leaderboard, options.metric, folds=n_folds if consequence else None)
    chosen.selected = True
    assert chosen.oof_risk is not None
    calibrator, calibration, oof_risk = fit_recalibration(
        y, chosen.oof_risk, folds=n_folds, seed=options.seed
    )
    threshold = choose_threshold(y, oof_risk, options.threshold_rule)

    family, pipeline = unfitted_model(chosen, leaderboard, schema, options.seed)
    schema, left_out = notes_left_out(schema, _families_of(chosen, leaderboard))
    if left_out:
        notices.append(left_out)
    pipeline.fit(X, y)
    where = "the training split" if options.validation == "holdout" else f"all {len(y)} rows"
    search.tick(f"refitting {chosen.family} on {where}")
    model = TrainedModel(
        family=family,
        schema=schema,
        pipeline=pipeline,
        threshold=threshold,
        threshold_rule=options.threshold_rule.describe(),
        calibrator=calibrator,
        info={"calibration": calibration, "cv_folds": n_folds, "candidate": chosen.family},
        background=X[schema.feature_names].sample(
            n=min(BACKGROUND_ROWS, len(X)), random_state=options.seed
        ),
    )
    if any(spec.type == "text" for spec in schema.features):
        from medserve.features.text import lineage

        model.info["notes_encoder"] = lineage().to_dict()  # the weights' sha256 checked
    validation = _validate(model, split, X, y, oof_risk, options, search)
    return TrainResult(
        model=model,
        leaderboard=leaderboard,
        split=split,
        notices=notices,
        validation=validation,
        sample_size=check,
        sample_size_consequence=consequence,
        selection=SELECTION_RULES[options.metric]
        + (
            ", then the simplest candidate within one standard error of the best"
            if consequence
            else ""
        ),
    )


def _families_of(chosen: CandidateResult, results: list[CandidateResult]) -> set[str]:
    """The families the chosen candidate is made of (a blend: its weighted members')."""
    if chosen.weights is None:
        assert chosen.candidate is not None
        return {chosen.candidate.family}
    by_label = {r.family: r for r in results}
    return {
        by_label[label].candidate.family
        for label, weight in chosen.weights.items()
        if weight > 0 and by_label[label].candidate is not None
    }


def _validate(model, split, X, y, oof_risk, options, search) -> Validation:
    n_folds = model.info["cv_folds"]
    if options.validation == "holdout":
        risk = model.predict_risk(split.test)
        return Validation("holdout", split.test, split.y_test, risk, len(y), n_folds)
    if options.validation == "cv":
        return Validation("cv", split.train, y, oof_risk, len(y), n_folds)
    apparent = model.predict_risk(split.train)
    optimism = bootstrap_optimism(
        refit_twin(model),  # the settings the fit chose, fixed (a blend keeps its weights)
        partial(apply_recalibration, model.calibrator),  # and its recalibration
        X,
        y,
        apparent,
        resamples=options.resamples,
        seed=options.seed,
        tick=search.tick,
    )
    return Validation(
        "bootstrap",
        split.train,
        y,
        apparent,
        len(y),
        n_folds,
        resamples=options.resamples,
        optimism=optimism,
    )

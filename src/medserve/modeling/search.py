"""The candidate search: each family (each variant of a tunable one) cross-validated on the
same folds, cheapest first, within a time limit, then a blend of those that finished.

Every candidate's out-of-fold risk is kept: selection compares them, the blend is
weighted on them, and ``--validation cv`` measures the chosen model on them.

Given a ``Parallel`` (``modeling.parallel``: Ray tasks, say), a candidate's folds are fitted
at once, and each family's capacities (smallest first, under the same skip rule) are tried
alongside the other families'; the results are put back in the candidates' order, so that
selection is the sequential search's. There the time limit is checked before each
candidate, not between its folds (the first candidate always finishes)."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline

from medserve.core.risk import risk_logit
from medserve.data.schema import Schema
from medserve.errors import ConfigError, DataError, option
from medserve.modeling.families import (
    BLEND,
    Member,
    Tunable,
    cross_fitted_risk,
    fit_weights,
    get_family,
    weighted_blend,
)
from medserve.modeling.parallel import IN_PROCESS, Parallel

# Mean CV AUROCs closer than this are a tie, broken by log-loss.
AUROC_TIE = 0.002
# How cross-validated candidates are ranked: AUROC (higher; near-ties broken by log-loss),
# or a proper score, lower being better.
SELECTION_METRICS = ("auroc", "brier", "logloss")
# One step of the search: what is happening (the progress bar's text).
Tick = Callable[[str], None]


@dataclass(frozen=True)
class Candidate:
    """One family with one setting of its tunable parameters."""

    label: str  # as the leaderboard shows it: "logistic", "lightgbm (8 leaves)"
    family: str
    settings: Mapping[str, Any] | None = None

    def build(self, schema: Schema, seed: int) -> Pipeline:
        family = get_family(self.family)
        if self.settings is None:
            return family.build(schema, seed=seed)
        assert isinstance(family, Tunable)
        return family.build(schema, seed=seed, settings=self.settings)


def expand(families: Sequence[str], n_rows: int) -> list[Candidate]:
    """The candidates of ``families``: one per variant of a tunable family, else one."""
    candidates = []
    for name in families:
        family = get_family(name)
        if isinstance(family, Tunable):
            variants = family.variants(n_rows)
            candidates.extend(
                Candidate(f"{name} ({label})", name, settings)
                for label, settings in variants.items()
            )
        else:
            candidates.append(Candidate(name, name))
    return candidates


@dataclass
class CandidateResult:
    family: str  # the candidate's label
    auroc_mean: float = float("nan")
    auroc_sd: float = float("nan")
    log_loss: float = float("nan")
    brier: float = float("nan")
    fit_seconds: float = 0.0
    selected: bool = False
    error: str | None = None
    oof_risk: np.ndarray | None = field(default=None, repr=False)
    candidate: Candidate | None = field(default=None, repr=False)
    # A blend: its members and their weights (label → weight), its intercept.
    weights: dict[str, float] | None = field(default=None, repr=False)
    intercept: float = field(default=0.0, repr=False)

    def to_dict(self) -> dict:
        keep = ("family", "auroc_mean", "auroc_sd", "log_loss", "brier", "fit_seconds")
        row: dict[str, Any] = {k: getattr(self, k) for k in keep}
        row |= {"selected": self.selected, "error": self.error}
        return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}

    @property
    def usable(self) -> bool:
        return self.error is None and bool(np.isfinite(self.auroc_mean))

    def score(self, y: np.ndarray, risk: np.ndarray, fold_auroc: Sequence[float]) -> None:
        self.auroc_mean = float(np.mean(fold_auroc))
        self.auroc_sd = float(np.std(fold_auroc))
        self.log_loss = float(log_loss(y, np.clip(risk, 1e-7, 1 - 1e-7)))
        self.brier = float(brier_score_loss(y, risk))
        self.oof_risk = risk


class Budget:
    """The search's deadline (``None``: no limit)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.started = time.perf_counter()

    @property
    def spent(self) -> bool:
        return self.seconds is not None and time.perf_counter() - self.started >= self.seconds


@dataclass(frozen=True)
class SearchData:
    """What every fold's fit reads: the table, its labels, the folds (sent once to where the
    fits run)."""

    schema: Schema
    X: pd.DataFrame
    y: np.ndarray
    folds: Sequence[tuple[np.ndarray, np.ndarray]]
    seed: int


@dataclass(frozen=True)
class FoldFit:
    """One fit: ``candidate`` on the training rows of fold number ``fold``."""

    candidate: Candidate
    fold: int


@dataclass(frozen=True)
class FoldScore:
    """A fold's fit scored on its other rows: their risks (None when it failed) and AUROC."""

    risk: np.ndarray | None
    auroc: float
    seconds: float
    error: str | None = None


def fit_fold(data: SearchData, task: FoldFit) -> FoldScore:
    """``task``'s candidate fitted on its fold's training rows and scored on the others; a
    candidate that cannot be fitted on them says why (the error), it does not raise."""
    train_index, valid_index = data.folds[task.fold]
    start = time.perf_counter()
    try:
        pipeline = clone(task.candidate.build(data.schema, data.seed))
        # Warnings (a solver that did not converge) reach the caller: they are information.
        pipeline.fit(data.X.iloc[train_index], data.y[train_index])
        risk = pipeline.predict_proba(data.X.iloc[valid_index])[:, 1]
        auroc = float(roc_auc_score(data.y[valid_index], risk))
    except (ValueError, RuntimeError, MemoryError) as exc:
        return FoldScore(None, float("nan"), time.perf_counter() - start, _failure(exc))
    return FoldScore(risk, auroc, time.perf_counter() - start)


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def cross_validate(
    candidate: Candidate,
    data: SearchData,
    tick: Tick,
    budget: Budget,
    *,
    first: bool = False,
    parallel: Parallel | None = None,
) -> CandidateResult:
    """The candidate fitted on each fold's training rows and scored on its other rows.

    In turn (no ``parallel``), the time limit is checked between folds: the ``first``
    candidate is the one the search cannot do without, stopped only if its first fold alone
    outlasts the limit (a limit too short to fit anything), and otherwise finishes. With
    ``parallel``, the folds are fitted at once and the limit is not checked here."""
    result = CandidateResult(family=candidate.label, candidate=candidate)
    n_folds = len(data.folds)
    scores: list[FoldScore] = []
    if parallel is None:
        for fold in range(n_folds):
            if budget.spent and (not first or len(scores) == 1):
                result.error = (
                    f"stopped by the time limit ({budget.seconds:g} s) after "
                    f"{len(scores)} of {n_folds} folds"
                )
                break
            scores.append(fit_fold(data, FoldFit(candidate, fold)))
            if scores[-1].error is not None:
                break
            tick(f"cross-validating {candidate.label}")
    else:
        for score in parallel.map(fit_fold, data, [FoldFit(candidate, k) for k in range(n_folds)]):
            scores.append(score)
            if score.error is not None:
                break  # the first fold that failed, as in turn
            tick(f"cross-validating {candidate.label}")
    fitted = [score for score in scores if score.error is None]
    result.error = result.error or next((s.error for s in scores if s.error is not None), None)
    result.fit_seconds = sum(score.seconds for score in scores) / max(len(fitted), 1)
    if result.error is None:
        oof = np.zeros(len(data.y))
        for (_, valid_index), score in zip(data.folds, fitted, strict=True):
            oof[valid_index] = score.risk
        result.score(data.y, oof, [score.auroc for score in fitted])
    return result


def blend_candidates(
    results: Sequence[CandidateResult],
    y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
) -> CandidateResult | None:
    """A blend of the finished candidates, measured on cross-fitted out-of-fold risk (its
    weights for each fold fitted on the other folds); None with fewer than two, or when
    every weight is 0 (no candidate beats a constant: a table without signal)."""
    usable = [r for r in results if r.usable and r.oof_risk is not None]
    if len(usable) < 2:
        return None
    start = time.perf_counter()
    logits = np.column_stack([risk_logit(r.oof_risk) for r in usable])
    intercept, weights = fit_weights(logits, y)
    if not np.any(weights > 0):
        return None  # no candidate adds anything: a constant is no model
    risk = cross_fitted_risk(logits, y, [valid for _, valid in folds])
    result = CandidateResult(family=BLEND)
    result.score(y, risk, [roc_auc_score(y[valid], risk[valid]) for _, valid in folds])
    result.fit_seconds = sum(r.fit_seconds for r in usable) + time.perf_counter() - start
    result.weights = {r.family: float(w) for r, w in zip(usable, weights, strict=True)}
    result.intercept = intercept
    return result


def select(
    results: Sequence[CandidateResult],
    metric: str = "auroc",
    *,
    folds: int | None = None,
) -> CandidateResult:
    """The best usable candidate by ``metric``. With ``folds`` (the number of CV folds), the
    one-standard-error rule: the first candidate, in the order tried (simplest first, the
    blend last), whose mean AUROC is within one standard error of the best one's."""
    usable = [r for r in results if r.usable]
    if not usable:
        reasons = "; ".join(f"{r.family}: {r.error}" for r in results)
        raise DataError(f"no model family could be trained ({reasons})")
    if metric == "brier":
        return min(usable, key=lambda r: r.brier)
    if metric == "logloss":
        return min(usable, key=lambda r: r.log_loss)
    best_auroc = max(r.auroc_mean for r in usable)
    tied = [r for r in usable if best_auroc - r.auroc_mean <= AUROC_TIE]
    best = min(tied, key=lambda r: r.log_loss)
    if folds is None:
        return best
    floor = best.auroc_mean - best.auroc_sd / np.sqrt(folds)
    return next(r for r in usable if r.auroc_mean >= floor)


def unfitted_model(
    chosen: CandidateResult, results: Sequence[CandidateResult], schema: Schema, seed: int
) -> tuple[str, Pipeline]:
    """The chosen candidate's family and unfitted pipeline (a blend: members unfitted, its
    weights fixed as the search fitted them), for refitting on all rows or a resample."""
    if chosen.weights is None:
        assert chosen.candidate is not None
        return chosen.candidate.family, chosen.candidate.build(schema, seed)
    by_label = {r.family: r for r in results}
    members, weights = [], []
    for label, weight in chosen.weights.items():
        if weight <= 0:
            continue
        candidate = by_label[label].candidate
        assert candidate is not None
        members.append(Member(label, candidate.family, candidate.build(schema, seed)))
        weights.append(weight)
    return BLEND, weighted_blend(members, weights, chosen.intercept, seed=seed)


def check_time_limit(seconds: float | None) -> None:
    if seconds is not None and not seconds > 0:
        raise ConfigError(
            f"time limit {seconds:g} s ({option('time_limit')}) must be more than 0 seconds"
        )


def out_of_time(results: Sequence[CandidateResult], budget: Budget) -> ConfigError:
    """The error when the limit ran out before any candidate finished cross-validating."""
    first = results[0] if results else None
    spent = f"; {first.family} needed {first.fit_seconds:.2f} s a fold" if first else ""
    return ConfigError(
        f"time limit {budget.seconds:g} s ({option('time_limit')}) is too short to fit any "
        f"model{spent}; allow at least a few folds' time (the search tries no new candidate "
        "once the limit is reached, but the first one must finish)"
    )


class Search:
    """The candidates cross-validated on the same folds, within ``budget``, with the
    progress bar's count (``progress(what, done, total)``; ``extra_steps`` are the steps the
    caller ticks after the search): in turn, or through ``parallel`` (the module's
    docstring), with the same results either way."""

    def __init__(
        self,
        schema: Schema,
        X: pd.DataFrame,
        y: np.ndarray,
        folds: Sequence[tuple[np.ndarray, np.ndarray]],
        seed: int,
        budget: Budget,
        progress: Callable[[str, int, int], None] | None,
        *,
        extra_steps: int,
        parallel: Parallel | None = None,
    ) -> None:
        self.data = SearchData(schema, X, y, folds, seed)
        self.budget = budget
        self.progress = progress
        self.extra_steps = extra_steps
        self.parallel = parallel
        self.done = 0
        self.total = 0
        self.results: list[CandidateResult] = []  # every candidate's, in the order given
        self._ticking = threading.Lock()  # family chains tick from their own threads

    def tick(self, what: str) -> None:
        with self._ticking:
            self.done += 1
            if self.progress:
                self.progress(what, self.done, max(self.total, self.done))

    def _skip_reason(
        self, candidate: Candidate, results: list[CandidateResult], *, first: bool
    ) -> str | None:
        """Why ``candidate`` is not tried, or None. The ``first`` candidate is tried whatever
        the time. Capacities are tried smallest first: once one does worse on the folds than
        the one before it (or does not finish), the larger ones are not tried; ``results``
        are those tried before it (at least its family's)."""
        if not first and self.budget.spent:
            return f"skipped: the time limit ({self.budget.seconds:g} s) was reached"
        smaller = _previous_variant(results, candidate)
        if smaller is None:
            return None
        if not smaller.usable:
            if (smaller.error or "").startswith("skipped"):
                return "skipped: a smaller capacity of the family was skipped"
            return f"skipped: {smaller.family} failed"
        if _did_worse(smaller, results):
            return f"skipped: {smaller.family} did worse than the smaller capacity before it"
        return None

    def _try(
        self,
        candidate: Candidate,
        tried: list[CandidateResult],
        *,
        first: bool,
        parallel: Parallel | None,
    ) -> CandidateResult:
        """``candidate`` cross-validated, or skipped (``_skip_reason``)."""
        skipped = self._skip_reason(candidate, tried, first=first)
        if skipped is not None:
            return CandidateResult(family=candidate.label, candidate=candidate, error=skipped)
        return cross_validate(
            candidate, self.data, self.tick, self.budget, first=first, parallel=parallel
        )

    def run(self, candidates: list[Candidate]) -> list[CandidateResult]:
        """Cross-validate ``candidates`` (or skip them); their results, in their order."""
        self.total = self.done + len(candidates) * len(self.data.folds) + self.extra_steps
        start = len(self.results)
        if self.parallel is None:
            for candidate in candidates:
                self.results.append(
                    self._try(candidate, self.results, first=not self.results, parallel=None)
                )
        else:
            self.results.extend(self._run_families_at_once(candidates))
        return self.results[start:]

    def _run_families_at_once(self, candidates: list[Candidate]) -> list[CandidateResult]:
        """Each family's candidates in turn (so the skip rule sees its smaller capacities),
        on a thread per family beside the others; the results in the candidates' order."""
        earlier = list(self.results)
        found: list[CandidateResult | None] = [None] * len(candidates)
        chains: dict[str, list[int]] = {}
        for index, candidate in enumerate(candidates):
            chains.setdefault(candidate.family, []).append(index)

        def run_chain(indices: list[int]) -> None:
            tried = list(earlier)
            for index in indices:
                candidate = candidates[index]
                # A family whose inputs are computed in this process (the notes' embeddings)
                # is fitted here.
                local = inputs_encoder(candidate.family) is not None
                result = self._try(
                    candidate,
                    tried,
                    first=index == 0 and not earlier,
                    parallel=IN_PROCESS if local else self.parallel,
                )
                found[index] = result
                tried.append(result)

        # Each thread in a copy of this context: the notes' embedding store is a ContextVar.
        with ThreadPoolExecutor(max_workers=max(len(chains), 1)) as threads:
            running = [
                threads.submit(contextvars.copy_context().run, run_chain, indices)
                for indices in chains.values()
            ]
        for chain in running:
            chain.result()  # a chain's exception, raised here
        return [result for result in found if result is not None]


def inputs_encoder(family: str) -> Callable[..., None] | None:
    """The family's step that computes its inputs once, in this process, before the folds
    read them (the text family's notes embeddings), or None."""
    return getattr(get_family(family), "encode_inputs", None)


def _previous_variant(
    results: list[CandidateResult], candidate: Candidate
) -> CandidateResult | None:
    """The last candidate tried before ``candidate`` that is a variant of its family."""
    if candidate.settings is None:
        return None
    for result in reversed(results):
        if result.candidate is not None and result.candidate.family == candidate.family:
            return result
    return None


def _did_worse(result: CandidateResult, results: list[CandidateResult]) -> bool:
    """Whether ``result`` scored a higher out-of-fold log-loss than the variant of its
    family tried before it."""
    before = _previous_variant(results[: results.index(result)], result.candidate)
    return before is not None and before.usable and result.log_loss > before.log_loss

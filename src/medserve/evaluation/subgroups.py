"""Subgroup performance: the core metrics per level of chosen columns (site, sex, …).

A level is judged only with at least ``MIN_ROWS`` rows and ``MIN_EVENTS`` events and
non-events; smaller ones are flagged "too small to judge" (their estimates, when
defined, are still shown with their wide intervals). A level with one outcome class
still shows what is defined there (its specificity or sensitivity, PPV and NPV where
anyone is or is not flagged, Brier score, O:E); AUROC and the other of the pair are
undefined, each with its reason.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

from medserve.data.schema import category_text
from medserve.errors import ConfigError, Location, option
from medserve.evaluation.metrics import metrics_where_defined
from medserve.evaluation.reliability import observed_expected
from medserve.evaluation.report_types import (
    Estimate,
    SubgroupColumn,
    SubgroupLevel,
    SubgroupMetrics,
    Subgroups,
)

MIN_ROWS = 30
MIN_EVENTS = 5
MAX_LEVELS = 20
# Numeric columns with more distinct values than this are grouped into quartiles.
MAX_NUMERIC_LEVELS = 10
CORE_METRICS = ("auroc", "sensitivity", "specificity", "ppv", "npv", "brier")
MISSING_LEVEL = "(missing)"
RULE = (
    f"levels with fewer than {MIN_ROWS} rows, or fewer than {MIN_EVENTS} events or "
    f"{MIN_EVENTS} non-events, are too small to judge"
)


def check_group_columns(
    columns: Sequence[str],
    available: Sequence[str],
    *,
    outcome: str | None,
    source: str,
    withheld: Collection[str] = (),
) -> list[str]:
    """The requested ``--group`` columns, or ConfigError naming the one that cannot be used."""
    chosen: list[str] = []
    for column in columns:
        if column not in available:
            raise ConfigError(
                f"group column '{column}' ({option('groups')}): {source} has no such column; "
                f"it has {', '.join(available)}",
                location=Location(column=column),
            )
        if column == outcome:
            raise ConfigError(
                f"group column '{column}' ({option('groups')}) is the outcome column; group by "
                "another column",
                location=Location(column=column),
            )
        if column in withheld:
            raise ConfigError(
                f"group column '{column}' ({option('groups')}): de-identification flagged it "
                "for review, and a report grouped by it would publish its values; check it, "
                "then declare it in a schema file, or group by another column",
                location=Location(column=column),
            )
        if column not in chosen:
            chosen.append(column)
    return chosen


def group_levels(values: pd.Series) -> tuple[pd.Series, list[str], bool]:
    """One label per row (the level as text, a quartile for many-valued numbers, or
    '(missing)'), the levels in reading order, and whether they are quartiles.

    Raises ConfigError when a text column has too many levels to report."""
    numbers = pd.to_numeric(values, errors="coerce")
    is_numeric = values.notna().any() and numbers[values.notna()].notna().all()
    if is_numeric and numbers.nunique() > MAX_NUMERIC_LEVELS:
        labels, names = _quartiles(numbers)
        quartiles = True
    else:
        labels = category_text(values).fillna(MISSING_LEVEL)
        names = sorted(set(labels) - {MISSING_LEVEL})
        quartiles = False
        if len(names) > MAX_LEVELS:
            raise ConfigError(
                f"group column '{values.name}' ({option('groups')}) has {len(names)} levels; "
                f"subgroups need a column with at most {MAX_LEVELS} (e.g. site or sex)",
                location=Location(column=str(values.name)),
            )
    present = set(labels)
    levels = [name for name in names if name in present]
    return labels, levels + ([MISSING_LEVEL] if MISSING_LEVEL in present else []), quartiles


def subgroup_table(
    frame: pd.DataFrame,
    y: np.ndarray,
    risk: np.ndarray,
    threshold: float,
    columns: Sequence[str],
    *,
    seed: int = 0,
) -> Subgroups:
    """Counts and core metrics per level of each column in ``columns``."""
    y = np.asarray(y, dtype=int)
    risk = np.asarray(risk, dtype=float)
    groups = []
    for column in columns:
        labels, levels, quartiles = group_levels(frame[column].reset_index(drop=True))
        groups.append(
            SubgroupColumn(
                column=column,
                quartiles=quartiles,
                levels=[
                    _level_row(level, y[mask], risk[mask], threshold, seed)
                    for level in levels
                    for mask in [(labels == level).to_numpy()]
                ],
            )
        )
    return Subgroups(min_rows=MIN_ROWS, min_events=MIN_EVENTS, rule=RULE, groups=groups)


def _level_row(
    level: str, y: np.ndarray, risk: np.ndarray, threshold: float, seed: int
) -> SubgroupLevel:
    n, events = len(y), int(y.sum())
    non_events = n - events
    judged = n >= MIN_ROWS and min(events, non_events) >= MIN_EVENTS
    if events == 0 or non_events == 0:
        only, missing = ("non-events", "sensitivity") if events == 0 else ("events", "specificity")
        note: str | None = f"one outcome class (all {only}): AUROC and {missing} undefined"
    elif not judged:
        note = f"too small to judge ({n} rows, {events} events, {non_events} non-events)"
    else:
        note = None
    metrics = metrics_where_defined(y, risk, threshold, seed=seed)
    estimates = SubgroupMetrics(
        **{name: Estimate.of(metrics[name]) for name in CORE_METRICS},
        oe_ratio=_oe_ratio(y, risk),
    )
    return SubgroupLevel(
        level=level,
        n=n,
        events=events,
        event_rate=events / n,
        judged=judged,
        note=note,
        metrics=estimates,
    )


def _oe_ratio(y: np.ndarray, risk: np.ndarray) -> Estimate:
    """O:E of the level; 0 without an interval when no events occurred (the log-scale
    interval needs one), undefined when the predicted risks sum to 0."""
    observed_vs_expected = observed_expected(y, risk)
    if observed_vs_expected["estimate"] is not None:
        return Estimate(
            estimate=observed_vs_expected["estimate"], ci95=observed_vs_expected["ci95"]
        )
    expected = float(risk.sum())
    if expected == 0:
        return Estimate(estimate=None, reason="every predicted risk is 0 (no expected events)")
    return Estimate(
        estimate=0.0,
        reason=(
            f"no events observed against {expected:.1f} expected; "
            "the O:E interval needs at least one event"
        ),
    )


def _quartiles(numbers: pd.Series) -> tuple[pd.Series, list[str]]:
    """Quartile labels such as '< 47', '47–54', '54–60', '≥ 60' (no extreme values shown)."""
    cuts = np.unique(np.percentile(numbers.dropna(), [25, 50, 75]))
    shown = [f"{c:g}" for c in cuts]
    names = [f"< {shown[0]}"]
    names += [f"{a}–{b}" for a, b in zip(shown[:-1], shown[1:], strict=True)]
    names += [f"≥ {shown[-1]}"]
    # Bins [-inf, c1), [c1, c2), …, [ck, inf): right=False keeps each cut in the upper bin.
    codes = pd.cut(numbers, bins=[-np.inf, *cuts, np.inf], right=False, labels=False)
    labels = pd.Series(
        [MISSING_LEVEL if pd.isna(code) else names[int(code)] for code in codes],
        index=numbers.index,
        name=numbers.name,
    )
    return labels, names

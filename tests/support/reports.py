"""What report tests share: synthetic predictions, a typed report built from them by the
report builder, the figures every report has, and a walk over a report's JSON."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from medserve.evaluation import evaluate_predictions
from medserve.evaluation.model_card import ModelCard, intended_use_section
from medserve.evaluation.report import ReportOptions, performance_sections, training_report
from medserve.evaluation.report_types import (
    ColumnSummary,
    ContributionBins,
    DataSection,
    Explanations,
    Importance,
    InternalValidation,
    LeaderboardRow,
    SampleSize,
    TrainingReport,
)

# The report's figures, in page order (each an inline SVG with this aria-label).
PLOT_NAMES = [
    "roc",
    "precision-recall",
    "calibration",
    "decision-curve",
    "subgroups",
    "importance",
    "contributions",
]

# A training report as stored before the full report (sections were added later).
LEGACY_REPORT = {
    "kind": "training",
    "created_at": "2026-01-01T00:00:00+00:00",
    "data": {"source": "old.csv", "sha256": "0" * 64, "rows": 10, "columns": []},
    "split": {"n_train": 8, "n_test": 2},
    "model": {"family": "logistic", "threshold": 0.5, "leaderboard": []},
    "metrics": {"split": "held-out test"},
    "notices": [],
}
EXPLANATIONS = Explanations(
    space="log-odds",
    method="lightgbm pred_contrib (exact TreeSHAP)",
    n=61,
    importance=[
        Importance(column="cp", mean_abs=0.53),
        Importance(column="age", mean_abs=0.21),
        Importance(column="sex", mean_abs=0.12),
    ],
    distribution=[
        ContributionBins(
            column=column, edges=[-1.0, -0.5, 0.0, 0.5, 1.0], counts=[3, 20, 30, 8], value_level=v
        )
        for column, v in [
            ("cp", [None, None, None, None]),
            ("age", [0.1, 0.35, 0.6, 0.9]),
            ("sex", [None, 0.4, None, None]),
        ]
    ],
)
LEADERBOARD = [
    LeaderboardRow(
        family="logistic",
        auroc_mean=0.8,
        auroc_sd=0.02,
        log_loss=0.5,
        brier=0.17,
        fit_seconds=0.1,
        selected=True,
    ),
    LeaderboardRow(family="mlp", error="RuntimeError: x"),
]


def synthetic(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Risks, outcomes drawn from them, and group columns with a small and a one-class level."""
    rng = np.random.default_rng(seed)
    risk = rng.beta(2, 3, size=n)
    y = (rng.random(n) < risk).astype(int)
    site = rng.choice(["A", "B"], size=n)
    site[:20] = "C"  # too small to judge
    ward = np.where(y == 1, "W1", "W2")
    ward[y == 0] = np.where(rng.random((y == 0).sum()) < 0.5, "W2", "W3")  # W2, W3: no events
    frame = pd.DataFrame(
        {
            "site": site,
            "sex": rng.choice(["F", "M", None], size=n, p=[0.45, 0.45, 0.1]),
            "age": rng.integers(20, 90, size=n),
            "ward": ward,
        }
    )
    return frame, y, risk


def synthetic_report(
    *,
    explanations: Explanations | None = EXPLANATIONS,
    card: ModelCard | None = None,
    notices: list[str] | None = None,
    validation: InternalValidation | None = None,
    sample_size: SampleSize | None = None,
) -> TrainingReport:
    """A training report of 300 synthetic predictions, built as training builds one."""
    frame, y, risk = synthetic(n=300)
    metrics = evaluate_predictions(y, risk, 0.4, n_resamples=200)
    model = SimpleNamespace(
        family="logistic",
        threshold=0.4,
        threshold_rule="maximises Youden's J",
        info={"calibration": {"method": "none"}, "cv_folds": 3},
    )
    return training_report(
        data=DataSection(
            source="synthetic.csv",
            sha256="ab" * 32,
            rows=300,
            outcome="y = 1",
            rows_with_outcome=300,
            events=int(y.sum()),
            event_rate=float(y.mean()),
            columns=[
                ColumnSummary(
                    name="age",
                    type="numeric",
                    role="feature",
                    missing_fraction=0.0,
                    missing_handling="median imputation",
                )
            ],
        ),
        model=model,
        leaderboard=LEADERBOARD,
        metrics=metrics,
        n_train=240,
        n_test=60,
        notices=notices or [],
        performance=performance_sections(
            rows=frame,
            y=y,
            risk=risk,
            threshold=0.4,
            threshold_rule="maximises Youden's J",
            metrics=metrics,
            groups=["site", "sex"],
        ),
        explanations=explanations,
        options=ReportOptions(
            groups=["site", "sex"],
            intended_use=intended_use_section(card, None),
            card=card or ModelCard(),
        ),
        params={"estimator": {"C": 1.0}, "seed": 0},
        libraries={"python": "3.11"},
        validation=validation,
        sample_size=sample_size,
    )


def files_under(directory: Path) -> dict[str, int | str]:
    """Every path under ``directory``: files with their modification times, and folders."""
    return {
        str(p.relative_to(directory)): p.stat().st_mtime_ns if p.is_file() else "dir"
        for p in directory.rglob("*")
    }


def lists_in(value: Any) -> Iterator[list]:
    """Every list inside a JSON-like value: per-row data would be one as long as the rows."""
    if isinstance(value, dict):
        for item in value.values():
            yield from lists_in(item)
    elif isinstance(value, list):
        yield value
        for item in value:
            yield from lists_in(item)

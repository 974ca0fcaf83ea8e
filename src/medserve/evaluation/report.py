"""The model report as JSON-ready data (TRIPOD+AI style): what was learned from what,
how well it discriminates, classifies and is calibrated, whether it is useful, for whom
it works, and what it is for.

Aggregates only: a report is shared widely, so it never holds a patient's row (curves
are point lists of rates, calibration is bins and a smoothed line on a grid, subgroups
are counts and metrics, explanations are importances and binned distributions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medserve.data.schema import ColumnSpec, Schema
from medserve.evaluation.curves import confusion_counts, pr_points, roc_points
from medserve.evaluation.decision import decision_curve
from medserve.evaluation.metrics import Metric
from medserve.evaluation.model_card import intended_use_section, read_model_card
from medserve.evaluation.reliability import reliability
from medserve.evaluation.subgroups import check_group_columns, subgroup_table

CLASSIFICATION_METRICS = ("sensitivity", "specificity", "ppv", "npv", "f1", "accuracy")


@dataclass
class ReportOptions:
    """What the user asked the report to cover: subgroup columns and intended use."""

    groups: list[str] = field(default_factory=list)
    intended_use: dict[str, Any] = field(default_factory=lambda: intended_use_section(None, None))

    @classmethod
    def build(
        cls,
        *,
        groups: Sequence[str],
        columns: Sequence[str],
        outcome: str | None,
        source: str,
        intended_use: str | None = None,
        model_card: Path | None = None,
        inherited: dict[str, Any] | None = None,
    ) -> ReportOptions:
        """Check the options against the data before any work starts (ConfigError if not).

        ``inherited`` is an earlier report's intended-use section, used when neither
        ``intended_use`` nor ``model_card`` is given (external validation of a model)."""
        chosen = check_group_columns(groups, list(columns), outcome=outcome, source=source)
        card = read_model_card(model_card) if model_card is not None else None
        if card is None and not intended_use and inherited and inherited.get("supplied"):
            return cls(groups=chosen, intended_use=inherited)
        section = intended_use_section(card, intended_use, model_card.name if model_card else None)
        return cls(groups=chosen, intended_use=section)


# Families that take missing numbers as they are (no imputation in their pipeline).
NATIVE_MISSING = {"lightgbm": "LightGBM", "ebm": "the EBM"}


def _missing_handling(spec: ColumnSpec, family: str | None) -> str:
    if spec.role != "feature":
        return f"not a feature ({spec.role})"
    native = NATIVE_MISSING.get(family or "")
    if spec.numeric_encoded:
        if family is None:
            return "median imputation with a missing indicator (LightGBM: routed natively)"
        if native:
            return f"left missing: {native} routes missing values natively"
        return "median imputation with a missing indicator"
    if family == "ebm":
        return "left missing: the EBM gives it its own bin"
    return "kept as its own level '(missing)'"


def data_summary(frame: pd.DataFrame, schema: Schema, family: str | None = None) -> dict[str, Any]:
    """Rows, events, event rate and per-column type and missingness; ``family`` says how
    the model handles missing values (both ways are described when it is not known)."""
    summary: dict[str, Any] = {"rows": int(len(frame))}
    if schema.outcome is not None and schema.outcome.column in frame.columns:
        target = frame[schema.outcome.column].dropna()
        events = int(schema.outcome.binarise(target).sum())
        summary.update(
            outcome=schema.outcome.describe(),
            rows_with_outcome=int(len(target)),
            events=events,
            event_rate=events / len(target) if len(target) else None,
        )
    summary["columns"] = [
        {
            "name": spec.name,
            "type": spec.type,
            "role": spec.role,
            "missing_fraction": round(spec.missing_fraction, 4),
            "missing_tokens": spec.missing_tokens,
            "missing_handling": _missing_handling(spec, family),
        }
        for spec in schema.columns
    ]
    return summary


def performance_sections(
    *,
    rows: pd.DataFrame,
    y: np.ndarray,
    risk: np.ndarray,
    threshold: float,
    threshold_rule: str,
    metrics: dict[str, Metric],
    groups: Sequence[str] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """Discrimination, classification, calibration, decision curve and subgroups."""
    y = np.asarray(y, dtype=int)
    risk = np.asarray(risk, dtype=float)
    confusion = confusion_counts(y, risk, threshold)
    sensitivity = metrics["sensitivity"].estimate
    specificity = metrics["specificity"].estimate
    return {
        "evaluated_rows": {"n": int(len(y)), "events": int(y.sum())},
        "discrimination": {
            "auroc": metrics["auroc"].to_dict(),
            "auprc": metrics["auprc"].to_dict(),
            "roc": roc_points(y, risk),
            "pr": pr_points(y, risk),
            "operating_point": {
                "fpr": _finite(1 - specificity),
                "tpr": _finite(sensitivity),
                "precision": _finite(metrics["ppv"].estimate),
            },
        },
        "classification": {
            "threshold": threshold,
            "threshold_rule": threshold_rule,
            "confusion": confusion,
            "metrics": {name: metrics[name].to_dict() for name in CLASSIFICATION_METRICS},
        },
        "calibration": {
            "slope": metrics["calibration_slope"].to_dict(),
            "intercept": metrics["calibration_intercept"].to_dict(),
            "brier": metrics["brier"].to_dict(),
            **reliability(y, risk),
        },
        "decision_curve": {**decision_curve(y, risk), "model_threshold": threshold},
        "subgroups": subgroup_table(rows, y, risk, threshold, groups, seed=seed),
    }


def training_report(
    *,
    source: str,
    data_sha256: str,
    summary: dict[str, Any],
    schema: Schema,
    model: Any,
    leaderboard: list[dict[str, Any]],
    metrics: dict[str, Metric],
    n_train: int,
    n_test: int,
    notices: list[str],
    performance: dict[str, Any] | None = None,
    explanations: dict[str, Any] | None = None,
    options: ReportOptions | None = None,
    params: dict[str, Any] | None = None,
    libraries: dict[str, str] | None = None,
) -> dict[str, Any]:
    options = options or ReportOptions()
    params = params or {}
    return {
        "kind": "training",
        "created_at": datetime.now(UTC).isoformat(),
        "data": {"source": source, "sha256": data_sha256, **summary},
        "split": {"n_train": n_train, "n_test": n_test},
        "model": {
            "family": model.family,
            "threshold": model.threshold,
            "threshold_rule": model.threshold_rule,
            "calibration": model.info.get("calibration"),
            "cv_folds": model.info.get("cv_folds"),
            "leaderboard": leaderboard,
            "hyperparameters": params.get("estimator", {}),
            "seed": params.get("seed"),
            "libraries": libraries or {},
        },
        "metrics": {"split": "held-out test", **{k: m.to_dict() for k, m in metrics.items()}},
        **(performance or {}),
        "explanations": explanations,
        "intended_use": options.intended_use,
        "notices": notices,
    }


def evaluation_report(
    *,
    version: Any,
    source: str,
    data_sha256: str,
    summary: dict[str, Any],
    metrics: dict[str, Metric],
    notices: list[str],
    performance: dict[str, Any] | None = None,
    explanations: dict[str, Any] | None = None,
    options: ReportOptions | None = None,
) -> dict[str, Any]:
    options = options or ReportOptions()
    return {
        "kind": "external validation",
        "created_at": datetime.now(UTC).isoformat(),
        "model": {
            "name": version.name,
            "version": version.version,
            "family": version.family,
            "threshold": version.threshold,
            "trained_at": version.created_at.isoformat(),
            "training_data_sha256": version.data_sha256,
            "hyperparameters": version.params.get("estimator", {}),
            "libraries": version.lineage.get("libraries", {}),
        },
        "data": {"source": source, "sha256": data_sha256, **summary},
        "metrics": {"split": "all labelled rows", **{k: m.to_dict() for k, m in metrics.items()}},
        **(performance or {}),
        "explanations": explanations,
        "intended_use": options.intended_use,
        "notices": notices,
    }


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)

"""The model report as JSON-ready data: what was learned from what, and how well.

Aggregates only: a report is shared widely, so it never holds a patient's row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from medserve.data.schema import ColumnSpec, Schema
from medserve.evaluation.metrics import Metric


def _missing_handling(spec: ColumnSpec) -> str:
    if spec.role != "feature":
        return f"not a feature ({spec.role})"
    if spec.numeric_encoded:
        return "median imputation with a missing indicator (LightGBM: routed natively)"
    return "kept as its own level '(missing)'"


def data_summary(frame: pd.DataFrame, schema: Schema) -> dict[str, Any]:
    """Rows, events, event rate and per-column type and missingness."""
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
            "missing_handling": _missing_handling(spec),
        }
        for spec in schema.columns
    ]
    return summary


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
) -> dict[str, Any]:
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
        },
        "metrics": {"split": "held-out test", **{k: m.to_dict() for k, m in metrics.items()}},
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
) -> dict[str, Any]:
    return {
        "kind": "external validation",
        "created_at": datetime.now(UTC).isoformat(),
        "model": {
            "name": version.name,
            "version": version.version,
            "family": version.family,
            "threshold": version.threshold,
        },
        "data": {"source": source, "sha256": data_sha256, **summary},
        "metrics": {"split": "all labelled rows", **{k: m.to_dict() for k, m in metrics.items()}},
        "notices": notices,
    }

"""Model quality benchmark: every family, `auto` and the reference network on the bundled
datasets, over repeated stratified 80/20 splits.

For each dataset and seed, train_model makes its own stratified split with
``random_state=seed``, so every family (and the reference network, which takes the same
split from ``split_rows``) is scored on the same held-out rows. Reported per dataset ×
family: test AUROC, Brier score and fit time (the whole train_model call, cross-validated
selection, recalibration and refit included), mean ± sd over the splits, and the paired
gain in AUROC over the reference network.

    .venv/bin/python bench/quality.py                  # 5 splits, everything
    .venv/bin/python bench/quality.py --quick          # 2 splits
    .venv/bin/python bench/quality.py --datasets pima --families logistic,reference
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline

import medserve
from medserve.data import infer_schema, read_table
from medserve.data.schema import Schema
from medserve.modeling import TrainOptions, family_names, train_model
from medserve.modeling.families.mlp import TorchMLPClassifier
from medserve.modeling.preprocess import build_preprocessor
from medserve.modeling.train import split_rows

DATASET_DIR = Path(medserve.__file__).parent / "datasets"
RESULTS_PATH = Path(__file__).parent / "results" / "quality.json"


@dataclass(frozen=True)
class Dataset:
    name: str
    file: str
    target: str
    positive_if: str | None = None


DATASETS = {
    "heart": Dataset("heart", "heart_disease_uci.csv", target="num", positive_if=">0"),
    "pima": Dataset("pima", "pima_diabetes.csv", target="Outcome"),
}
REFERENCE = "reference"
ALL_FAMILIES = (*family_names(), "auto", REFERENCE)


@dataclass
class Run:
    """One family fitted and scored on one split."""

    dataset: str
    family: str
    seed: int
    auroc: float
    brier: float
    fit_seconds: float
    n_train: int
    n_test: int
    selected: str
    calibration: str = "none"
    notices: list[str] = field(default_factory=list)


def fit_reference(schema: Schema, train: pd.DataFrame, y_train: np.ndarray, seed: int) -> Pipeline:
    """The reference recipe: unscaled inputs, Dense 64 ReLU → Dense 32 ReLU → sigmoid,
    Adam + BCE for 10 epochs, no early stopping, no class weights, no recalibration.

    Imputation stays on (median + missing indicators, one-hot for levels) only because
    torch cannot take NaN; scaling is off, as in the reference."""
    pipeline = Pipeline(
        [
            ("preprocess", build_preprocessor(schema, impute=True, scale=False)),
            (
                "model",
                TorchMLPClassifier(
                    max_epochs=10,
                    validation_fraction=0.0,
                    class_weight=None,
                    batch_size=32,
                    random_state=seed,
                ),
            ),
        ]
    )
    return pipeline.fit(schema.prepare(train), y_train)


def run_reference(dataset: str, frame: pd.DataFrame, schema: Schema, seed: int) -> Run:
    split, notices = split_rows(frame, schema, TrainOptions(seed=seed, test_size=0.2))
    start = time.perf_counter()
    pipeline = fit_reference(schema, split.train, split.y_train, seed)
    fit_seconds = time.perf_counter() - start
    risk = pipeline.predict_proba(schema.prepare(split.test))[:, 1]
    return Run(
        dataset=dataset,
        family=REFERENCE,
        seed=seed,
        auroc=float(roc_auc_score(split.y_test, risk)),
        brier=float(brier_score_loss(split.y_test, risk)),
        fit_seconds=fit_seconds,
        n_train=len(split.train),
        n_test=len(split.test),
        selected=REFERENCE,
        notices=notices,
    )


def run_family(dataset: str, frame: pd.DataFrame, schema: Schema, family: str, seed: int) -> Run:
    options = TrainOptions(family=family, seed=seed, test_size=0.2, cv=5)
    start = time.perf_counter()
    result = train_model(frame, schema, options)
    fit_seconds = time.perf_counter() - start
    risk = result.model.predict_risk(result.split.test)
    selected = next(c.family for c in result.leaderboard if c.selected)
    return Run(
        dataset=dataset,
        family=family,
        seed=seed,
        auroc=float(roc_auc_score(result.split.y_test, risk)),
        brier=float(brier_score_loss(result.split.y_test, risk)),
        fit_seconds=fit_seconds,
        n_train=len(result.split.train),
        n_test=len(result.split.test),
        selected=selected,
        calibration=result.model.info.get("calibration", {}).get("method", "none"),
        notices=result.notices,
    )


def sd(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def mean_sd(values: list[float], digits: int, signed: bool = False) -> str:
    if not values:
        return "–"
    sign = "+" if signed else ""
    return f"{np.mean(values):{sign}.{digits}f} ± {sd(values) or 0.0:.{digits}f}"


def paired_gain(runs: list[Run], reference: dict[int, Run], metric: str) -> list[float]:
    """Per-split difference family − reference (same split, so the split noise cancels)."""
    return [
        getattr(r, metric) - getattr(reference[r.seed], metric) for r in runs if r.seed in reference
    ]


def selection_counts(runs: list[Run]) -> str:
    counts = Counter(r.selected for r in runs)
    return ", ".join(f"{family}×{n}" for family, n in counts.most_common())


def summarise(runs: list[Run], datasets: list[str], families: list[str]) -> list[dict]:
    """One row per dataset × family; "text" holds the cells as printed."""
    rows = []
    for dataset in datasets:
        reference = {r.seed: r for r in runs if r.dataset == dataset and r.family == REFERENCE}
        for family in families:
            group = [r for r in runs if r.dataset == dataset and r.family == family]
            if not group:
                continue
            auroc = [r.auroc for r in group]
            brier = [r.brier for r in group]
            fit = [r.fit_seconds for r in group]
            is_reference = family == REFERENCE
            gain_auroc = [] if is_reference else paired_gain(group, reference, "auroc")
            gain_brier = [] if is_reference else paired_gain(group, reference, "brier")
            rows.append(
                {
                    "dataset": dataset,
                    "family": family,
                    "splits": len(group),
                    "auroc_mean": float(np.mean(auroc)),
                    "auroc_sd": sd(auroc),
                    "brier_mean": float(np.mean(brier)),
                    "brier_sd": sd(brier),
                    "fit_seconds_mean": float(np.mean(fit)),
                    "fit_seconds_max": float(np.max(fit)),
                    "auroc_gain_vs_reference_mean": (
                        float(np.mean(gain_auroc)) if gain_auroc else None
                    ),
                    "auroc_gain_vs_reference_sd": sd(gain_auroc),
                    "brier_gain_vs_reference_mean": (
                        float(np.mean(gain_brier)) if gain_brier else None
                    ),
                    "brier_gain_vs_reference_sd": sd(gain_brier),
                    "selected": dict(Counter(r.selected for r in group)),
                    "recalibrated_splits": sum(r.calibration != "none" for r in group),
                    "text": {
                        "auroc": mean_sd(auroc, 3),
                        "brier": mean_sd(brier, 3),
                        "fit": mean_sd(fit, 1),
                        "d_brier": mean_sd(gain_brier, 3, signed=True),
                        "d_auroc": mean_sd(gain_auroc, 3, signed=True),
                        "selected": selection_counts(group),
                    },
                }
            )
    return rows


def print_table(console: Console, rows: list[dict], splits: int) -> None:
    table = Table(
        title=f"Test-set quality over {splits} stratified 80/20 splits (mean ± sd)",
        caption=(
            "fit s: wall-clock of the whole fit (5-fold CV selection, recalibration, refit); "
            "Δ: paired per-split difference from the reference network "
            "(ΔAUROC > 0 better, ΔBrier < 0 better)"
        ),
    )
    for header, justify in (
        ("dataset", "left"),
        ("family", "left"),
        ("AUROC", "right"),
        ("Brier", "right"),
        ("fit s", "right"),
        ("ΔBrier vs ref", "right"),
        ("ΔAUROC vs ref", "right"),
    ):
        table.add_column(header, justify=justify)
    previous = None
    for row in rows:
        if previous is not None and row["dataset"] != previous:
            table.add_section()
        previous = row["dataset"]
        text = row["text"]
        table.add_row(
            row["dataset"],
            row["family"],
            text["auroc"],
            text["brier"],
            text["fit"],
            text["d_brier"],
            text["d_auroc"],
        )
    console.print(table)
    for row in rows:
        if row["family"] == "auto":
            console.print(f"auto selected on {row['dataset']}: {row['text']['selected']}")


def machine_note() -> str:
    return (
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}, "
        f"{platform.platform()}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--splits", type=int, default=5, help="repeated splits (seeds 0..N-1)")
    parser.add_argument("--quick", action="store_true", help="2 splits")
    parser.add_argument(
        "--datasets", default=",".join(DATASETS), help=f"comma list of {', '.join(DATASETS)}"
    )
    parser.add_argument(
        "--families",
        default=",".join(ALL_FAMILIES),
        help=f"comma list of {', '.join(ALL_FAMILIES)}",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="JSON results file")
    args = parser.parse_args(argv)
    if args.quick:
        args.splits = 2
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [d for d in args.datasets if d not in DATASETS] + [
        f for f in args.families if f not in ALL_FAMILIES
    ]
    if unknown:
        parser.error(f"unknown dataset or family: {', '.join(unknown)}")
    if args.splits < 1:
        parser.error("--splits must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Joblib workers (EBM) start fresh interpreters: they read this, not our filters.
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    warnings.filterwarnings("ignore")
    console = Console(width=140)
    note = machine_note()
    console.print(note)
    seeds = list(range(args.splits))
    total = len(args.datasets) * len(seeds) * len(args.families)
    done = 0
    runs: list[Run] = []
    started = time.perf_counter()
    for name in args.datasets:
        dataset = DATASETS[name]
        frame = read_table(DATASET_DIR / dataset.file)
        schema = infer_schema(frame, target=dataset.target, positive_if=dataset.positive_if)
        for seed in seeds:
            for family in args.families:
                if family == REFERENCE:
                    run = run_reference(name, frame, schema, seed)
                else:
                    run = run_family(name, frame, schema, family, seed)
                runs.append(run)
                done += 1
                chosen = f" → {run.selected}" if family == "auto" else ""
                print(
                    f"[{done}/{total}] {name} seed {seed} {family}{chosen}: "
                    f"AUROC {run.auroc:.3f} Brier {run.brier:.3f} fit {run.fit_seconds:.1f}s "
                    f"(elapsed {time.perf_counter() - started:.0f}s)",
                    file=sys.stderr,
                    flush=True,
                )
    elapsed = time.perf_counter() - started
    rows = summarise(runs, args.datasets, args.families)
    print_table(console, rows, args.splits)
    console.print(f"total runtime: {elapsed:.0f}s")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": note,
        "splits": args.splits,
        "seeds": seeds,
        "datasets": args.datasets,
        "families": args.families,
        "total_seconds": elapsed,
        "summary": [{k: v for k, v in row.items() if k != "text"} for row in rows],
        "runs": [asdict(run) for run in runs],
    }
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    console.print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Internal validation benchmark: how close each method's estimate comes to the truth.

For each table and seed, a stratified 20% is set aside as the truth (what the model will
meet); `train_model` is given the other 80% once per method:

* ``holdout``: it holds out a further 20% of what it was given, fits on the rest and
  measures there;
* ``cv``: out-of-fold predictions of its cross-validation, final model on all it was given;
* ``bootstrap``: apparent performance minus Harrell's optimism (50 resamples).

Printed per table × method: the estimated AUROC and Brier, the same model's AUROC and
Brier on the untouched 20%, the error (estimate − truth) and fit seconds. Mean absolute
error over seeds says which estimate to trust; the truth column says what each method's
final model is worth (cv and bootstrap refit on everything they were given).

    .venv/bin/python bench/validation.py                       # heart and pima, 3 seeds
    .venv/bin/python bench/validation.py --datasets pima --seeds 5 --family logistic
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split

import medserve
from medserve.data import infer_schema, read_table
from medserve.modeling import TrainOptions, train_model

DATASET_DIR = Path(medserve.__file__).parent / "datasets"
TABLES = {
    "heart": ("heart_disease_uci.csv", "num", ">0"),
    "pima": ("pima_diabetes.csv", "Outcome", None),
}
METHODS = ("holdout", "cv", "bootstrap")


def estimate_of(result, metric: str) -> float:
    """The method's own estimate: the corrected figure for the bootstrap, else the metric
    on the rows it measured."""
    validation = result.validation
    for row in validation.optimism:
        if row.metric == metric:
            return row.corrected
    score = roc_auc_score if metric == "auroc" else brier_score_loss
    return float(score(validation.y, validation.risk))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="heart,pima")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--family", default="auto")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    console = Console(width=120)
    table = Table(title=f"Internal validation of `{args.family}`: estimate vs the untouched 20%")
    for column in (
        "table",
        "method",
        "AUROC est.",
        "AUROC truth",
        "|error|",
        "Brier est.",
        "Brier truth",
        "|error|",
        "fit s",
    ):
        table.add_column(column, justify="left" if column in ("table", "method") else "right")
    for name in args.datasets.split(","):
        file, target, positive_if = TABLES[name]
        frame = read_table(DATASET_DIR / file)
        schema = infer_schema(frame, target=target, positive_if=positive_if)
        labels = schema.outcome.binarise(frame[target])
        runs: dict[str, list[tuple[float, float, float, float, float]]] = {m: [] for m in METHODS}
        for seed in range(args.seeds):
            given, truth = train_test_split(
                frame, test_size=0.2, stratify=labels, random_state=seed
            )
            y_truth = schema.outcome.binarise(truth[target])
            for method in METHODS:
                options = TrainOptions(family=args.family, seed=seed, validation=method)
                start = time.perf_counter()
                result = train_model(given, schema, options)
                seconds = time.perf_counter() - start
                risk = result.model.predict_risk(truth)
                runs[method].append(
                    (
                        estimate_of(result, "auroc"),
                        float(roc_auc_score(y_truth, risk)),
                        estimate_of(result, "brier"),
                        float(brier_score_loss(y_truth, risk)),
                        seconds,
                    )
                )
                console.print(f"{name} seed {seed} {method}: {runs[method][-1]}", style="dim")
        for method in METHODS:
            a = np.asarray(runs[method])
            table.add_row(
                name,
                method,
                f"{a[:, 0].mean():.3f}",
                f"{a[:, 1].mean():.3f}",
                f"{np.abs(a[:, 0] - a[:, 1]).mean():.3f}",
                f"{a[:, 2].mean():.4f}",
                f"{a[:, 3].mean():.4f}",
                f"{np.abs(a[:, 2] - a[:, 3]).mean():.4f}",
                f"{a[:, 4].mean():.1f}",
            )
    console.print(table)
    console.print(pd.Timestamp.now().isoformat(timespec="seconds"), style="dim")


if __name__ == "__main__":
    main()

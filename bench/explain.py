"""Explanation cost per record, family by family, next to the prediction alone.

Each family is trained once on the bundled heart data (2-fold CV); then batches of
records drawn from the table are scored, and scored with explanations (contributions on
raw columns plus the summary sentence), on two paths:

- batch: a DataFrame through ``TrainedModel.predict_risk`` / ``Explainer.explain_frame``
  (what ``medserve predict --explain`` does);
- service: JSON records through the fast path's encoded matrix, ``FastScorer.risk`` vs
  ``risk_of_matrix`` + ``explain_matrix`` (what ``"explain": true`` does over HTTP).

Reported: median wall time of several repeats per batch size, µs per record, and the
extra cost of explaining per record. The target is < 1 ms per record extra for LightGBM
and logistic regression in batch scoring.

    .venv/bin/python bench/explain.py                       # all families, 1 000 rows
    .venv/bin/python bench/explain.py --families lightgbm --rows 1,100,10000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

import medserve
from medserve.config import Settings
from medserve.data import infer_schema, read_table
from medserve.explain import Explainer, explained
from medserve.modeling import TrainOptions, family_names, train_model
from medserve.scoring.compiled import FastScorer

HEART = Path(medserve.__file__).parent / "datasets" / "heart_disease_uci.csv"
BANDS = Settings().bands_for(None, 0.5).of


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    work()  # warm-up: lazy explainers, first-call allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def json_records(frame: pd.DataFrame) -> list[dict]:
    return [
        {k: (None if pd.isna(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def measure(family: str, model, table: pd.DataFrame, rows: int, repeats: int) -> dict:
    batch = table.sample(n=rows, replace=True, random_state=rows).reset_index(drop=True)
    records = json_records(batch)
    explainer = Explainer(model)
    scorer = FastScorer.from_model(model)

    def batch_explain() -> None:
        risk = model.predict_risk(batch)
        explanations = explainer.explain_frame(batch)
        explained(explanations, risk.tolist(), BANDS(risk.tolist()), records)

    def service_explain() -> None:
        if scorer.exact_fast_path and explainer.takes_matrix:
            matrix = scorer.matrix(records)
            risk = scorer.risk_of_matrix(matrix)
            explanations = explainer.explain_matrix(matrix)
        else:
            risk = scorer.risk(records)
            explanations = explainer.explain_frame(batch)
        explained(explanations, risk.tolist(), BANDS(risk.tolist()), records)

    timings = {
        "batch_predict": median_seconds(lambda: model.predict_risk(batch), repeats),
        "batch_explain": median_seconds(batch_explain, repeats),
        "service_predict": median_seconds(lambda: scorer.risk(records), repeats),
        "service_explain": median_seconds(service_explain, repeats),
    }
    return {"family": family, "rows": rows, "method": explainer.method, **timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(family_names()))
    parser.add_argument("--rows", default="1,1000", help="batch sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    table = read_table(HEART)
    schema = infer_schema(table, target="num", positive_if=">0")
    features = table[schema.feature_names]
    console = Console(width=150)
    console.print(
        f"heart ({len(table)} rows, {len(schema.features)} features) · python "
        f"{platform.python_version()} · {os.cpu_count()} CPUs · load {os.getloadavg()[0]:.1f}"
    )
    results = []
    for family in args.families.split(","):
        with console.status(f"training {family}"):
            model = train_model(table, schema, TrainOptions(family=family, cv=2)).model
        for rows in (int(r) for r in args.rows.split(",")):
            repeats = args.repeats if rows <= 1000 or family in ("logistic", "lightgbm") else 3
            with console.status(f"{family}: {rows} rows"):
                results.append(measure(family, model, features, rows, repeats))

    table_out = Table(title="Explanation cost (median wall time; µs per record)")
    for column in (
        "family",
        "rows",
        "predict batch",
        "+explain batch",
        "extra/rec batch",
        "predict service",
        "+explain service",
        "extra/rec service",
    ):
        table_out.add_column(column, justify="right")
    for r in results:
        n = r["rows"]

        def per_record(seconds: float, n: int = n) -> str:
            return f"{seconds / n * 1e6:,.1f}"

        table_out.add_row(
            r["family"],
            f"{n:,}",
            per_record(r["batch_predict"]),
            per_record(r["batch_explain"]),
            per_record(r["batch_explain"] - r["batch_predict"]),
            per_record(r["service_predict"]),
            per_record(r["service_explain"]),
            per_record(r["service_explain"] - r["service_predict"]),
        )
    console.print(table_out)
    for r in {r["family"]: r for r in results}.values():
        console.print(f"{r['family']}: {r['method']}")


if __name__ == "__main__":
    main()

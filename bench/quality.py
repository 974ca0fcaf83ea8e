"""Model quality benchmark: medserve's families and `auto`, a plain scikit-learn logistic
regression, the reference network and (with --anchors) AutoGluon-Tabular, on the same
stratified 80/20 splits of the bundled tables or of the whole panel (bench/panel.py).

The harness makes each split once per (table, seed) with
``train_test_split(stratify=y, random_state=seed, test_size=0.2)``; every system is fitted
on the same 80 % and scored on the same 20 %. medserve systems get the 80 % as medserve
reads a CSV (cells as strings; ``infer_schema`` on the 80 %, then ``train_model``), the
others get it as ``pandas.read_csv`` types it. Reported per table × system: test AUROC,
Brier score and fit seconds (wall clock of the whole fit), mean ± sd over the seeds; then
panel means, fit-time ratios and paired differences of `auto` from its baselines.

    .venv/bin/python bench/quality.py                          # bundled tables, 5 seeds
    .venv/bin/python bench/quality.py --quick                  # 2 seeds
    .venv/bin/python bench/quality.py --panel --anchors        # the issue 16 comparison
    .venv/bin/python bench/quality.py --datasets pima --families logistic,reference
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
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
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from medserve.data import infer_schema, read_table
from medserve.data.schema import Schema
from medserve.modeling import TrainOptions, family_names, train_model
from medserve.modeling.families.mlp import TorchMLPClassifier
from medserve.modeling.preprocess import build_preprocessor
from panel import BUNDLED, PANEL, PanelTable

BENCH_DIR = Path(__file__).parent
RESULTS_DIR = BENCH_DIR / "results"
ANCHOR_CACHE = RESULTS_DIR / "anchors.json"
ANCHOR_PYTHON = BENCH_DIR.parent / ".venv-anchors" / "bin" / "python"
ANCHOR_SCRIPT = BENCH_DIR / "anchors_autogluon.py"
LABEL = "__outcome__"  # the 0/1 outcome column in the files handed to AutoGluon

AUTO = "auto"
REFERENCE = "reference"
SKLEARN_LOGISTIC = "logistic-sklearn"
AUTOGLUON = "autogluon"
MEDSERVE_SYSTEMS = (*family_names(), AUTO)
ALL_SYSTEMS = (*MEDSERVE_SYSTEMS, REFERENCE, SKLEARN_LOGISTIC, AUTOGLUON)
DEFAULT_SYSTEMS = (*MEDSERVE_SYSTEMS, REFERENCE, SKLEARN_LOGISTIC)


@dataclass
class Run:
    """One system fitted and scored on one split."""

    dataset: str
    family: str
    seed: int
    auroc: float
    brier: float
    fit_seconds: float
    n_train: int
    n_test: int
    selected: str
    fit_cpu_seconds: float | None = None
    load_average: float | None = None
    calibration: str = "none"
    notices: list[str] = field(default_factory=list)


class Stopwatch:
    """Wall and CPU seconds of a block. CPU counts this process and the child processes
    that ended inside the block (not pooled workers that outlive it); the 1-minute load
    average at the start shows how busy the machine was."""

    def __enter__(self) -> Stopwatch:
        self.load_average = os.getloadavg()[0]
        self._start = (time.perf_counter(), time.process_time(), children_cpu())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, cpu, children = self._start
        self.wall_seconds = time.perf_counter() - wall
        self.cpu_seconds = time.process_time() - cpu + children_cpu() - children


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class SplitData:
    """One (table, seed) split in both readings: medserve's strings and pandas' types."""

    table: PanelTable
    seed: int
    raw_train: pd.DataFrame
    raw_test: pd.DataFrame
    typed_train: pd.DataFrame
    typed_test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray

    def score(self, system: str, risk: np.ndarray, clock: Stopwatch, **extra) -> Run:
        return Run(
            dataset=self.table.name,
            family=system,
            seed=self.seed,
            auroc=float(roc_auc_score(self.y_test, risk)),
            brier=float(brier_score_loss(self.y_test, risk)),
            fit_seconds=clock.wall_seconds,
            fit_cpu_seconds=clock.cpu_seconds,
            load_average=clock.load_average,
            n_train=len(self.y_train),
            n_test=len(self.y_test),
            selected=extra.pop("selected", system),
            **extra,
        )


def make_split(table: PanelTable, raw: pd.DataFrame, typed: pd.DataFrame, seed: int) -> SplitData:
    labels = table.labels(typed)
    rows_train, rows_test = train_test_split(
        np.arange(len(labels)), stratify=labels, random_state=seed, test_size=0.2
    )
    return SplitData(
        table=table,
        seed=seed,
        raw_train=raw.iloc[rows_train],
        raw_test=raw.iloc[rows_test],
        typed_train=typed.iloc[rows_train],
        typed_test=typed.iloc[rows_test],
        y_train=labels[rows_train],
        y_test=labels[rows_test],
    )


def train_options(family: str, seed: int, args: argparse.Namespace) -> TrainOptions:
    """TrainOptions for this run; validation and time_limit only where TrainOptions has them,
    so the harness runs on medserve before and after they were added."""
    names = {f.name for f in dataclasses.fields(TrainOptions)}
    extra = {}
    if args.validation is not None and "validation" in names:
        extra["validation"] = args.validation
    if args.time_limit is not None and "time_limit" in names:
        extra["time_limit"] = args.time_limit
    return TrainOptions(family=family, seed=seed, **extra)


def run_medserve(split: SplitData, family: str, args: argparse.Namespace) -> Run:
    table = split.table
    options = train_options(family, split.seed, args)
    with Stopwatch() as clock:
        schema = infer_schema(
            split.raw_train,
            target=table.target,
            positive=table.positive,
            positive_if=table.positive_if,
        )
        result = train_model(split.raw_train, schema, options)
    assert schema.outcome is not None
    if not np.array_equal(schema.outcome.binarise(split.raw_train[table.target]), split.y_train):
        raise RuntimeError(f"{table.name}: medserve reads the outcome differently from the panel")
    risk = result.model.predict_risk(split.raw_test)
    return split.score(
        family,
        risk,
        clock,
        selected=next(c.family for c in result.leaderboard if c.selected),
        calibration=result.model.info.get("calibration", {}).get("method", "none"),
        notices=list(result.notices),
    )


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


def run_reference(split: SplitData) -> Run:
    table = split.table
    with Stopwatch() as clock:
        schema = infer_schema(
            split.raw_train,
            target=table.target,
            positive=table.positive,
            positive_if=table.positive_if,
        )
        pipeline = fit_reference(schema, split.raw_train, split.y_train, split.seed)
    risk = pipeline.predict_proba(schema.prepare(split.raw_test))[:, 1]
    return split.score(REFERENCE, risk, clock)


def sklearn_logistic() -> Pipeline:
    """What a careful analyst writes first: median imputation and scaling for numbers,
    the most frequent level and one-hot for text, LogisticRegression's defaults
    (max_iter raised so that it converges)."""
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    categorical = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    features = ColumnTransformer(
        [
            ("numeric", numeric, make_column_selector(dtype_include="number")),
            ("categorical", categorical, make_column_selector(dtype_exclude="number")),
        ]
    )
    return make_pipeline(features, LogisticRegression(max_iter=1000))


def analyst_features(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """The features as pandas typed them; anything not a number (text, booleans) as objects,
    so it takes the one-hot branch."""
    features = frame.drop(columns=target)
    text = features.select_dtypes(exclude="number").columns
    return features.astype(dict.fromkeys(text, object))


def run_sklearn_logistic(split: SplitData) -> Run:
    target = split.table.target
    with Stopwatch() as clock:
        features = analyst_features(split.typed_train, target)
        pipeline = sklearn_logistic().fit(features, split.y_train)
    risk = pipeline.predict_proba(analyst_features(split.typed_test, target))[:, 1]
    return split.score(SKLEARN_LOGISTIC, risk, clock)


class AnchorCache:
    """AutoGluon results by (table, seed, settings), kept across runs in anchors.json."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}

    def get(self, key: str, data_sha256: str) -> dict | None:
        entry = self.entries.get(key)
        return entry if entry and entry.get("data_sha256") == data_sha256 else None

    def put(self, key: str, entry: dict) -> None:
        # Re-read first: another run may have added entries since this one started.
        if self.path.exists():
            self.entries = json.loads(self.path.read_text()) | self.entries
        self.entries[key] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.entries, indent=1, sort_keys=True) + "\n")
        partial.replace(self.path)


def run_autogluon(split: SplitData, args: argparse.Namespace, cache: AnchorCache) -> Run:
    """AutoGluon in its own venv (pandas < 2.4), through files that live only for the call."""
    target = split.table.target
    train = split.typed_train.drop(columns=target).assign(**{LABEL: split.y_train})
    test = split.typed_test.drop(columns=target).assign(**{LABEL: split.y_test})
    train_csv, test_csv = train.to_csv(index=False), test.to_csv(index=False)
    data_sha256 = hashlib.sha256((train_csv + "\0" + test_csv).encode()).hexdigest()
    settings = f"{args.anchor_presets}|time_limit={args.anchor_time_limit:g}"
    key = f"{split.table.name}|seed={split.seed}|{settings}"
    entry = cache.get(key, data_sha256)
    if entry is None:
        with tempfile.TemporaryDirectory(prefix="medserve-anchor-") as folder:
            split_dir = Path(folder)
            for name, text in (("train.csv", train_csv), ("test.csv", test_csv)):
                path = split_dir / name
                path.touch(mode=0o600)
                path.write_text(text)
            command = [
                str(args.anchor_python),
                str(ANCHOR_SCRIPT),
                f"--split-dir={split_dir}",
                f"--label={LABEL}",
                f"--presets={args.anchor_presets}",
                f"--time-limit={args.anchor_time_limit}",
                f"--seed={split.seed}",
            ]
            # The anchor venv has its own packages: no PYTHONPATH from a medserve checkout.
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            with Stopwatch() as clock:
                subprocess.run(
                    command, check=True, env=env, timeout=10 * args.anchor_time_limit + 300
                )
            result = json.loads((split_dir / "result.json").read_text())
        risk = np.asarray(result.pop("risk"))
        # fit() alone, as the anchor timed it: not the interpreter start or the imports.
        clock.wall_seconds = result.pop("fit_seconds")
        clock.cpu_seconds = result.pop("fit_cpu_seconds")
        entry = {
            **asdict(split.score(AUTOGLUON, risk, clock)),
            **result,
            "settings": settings,
            "data_sha256": data_sha256,
        }
        cache.put(key, entry)
    fields = {f.name for f in dataclasses.fields(Run)}
    return Run(
        **{k: v for k, v in entry.items() if k in fields} | {"selected": entry["best_model"]}
    )


def run_system(split: SplitData, system: str, args: argparse.Namespace, cache: AnchorCache) -> Run:
    if system == REFERENCE:
        return run_reference(split)
    if system == SKLEARN_LOGISTIC:
        return run_sklearn_logistic(split)
    if system == AUTOGLUON:
        return run_autogluon(split, args, cache)
    return run_medserve(split, system, args)


# --- summaries -------------------------------------------------------------------------


def sd(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def mean_sd(values: list[float], digits: int, signed: bool = False) -> str:
    if not values:
        return "–"
    sign = "+" if signed else ""
    return f"{np.mean(values):{sign}.{digits}f} ± {sd(values) or 0.0:.{digits}f}"


def group_of(runs: list[Run], system: str) -> list[Run]:
    return [r for r in runs if r.family == system]


def group(runs: list[Run], dataset: str, system: str) -> list[Run]:
    return [r for r in runs if r.dataset == dataset and r.family == system]


def paired(runs: list[Run], dataset: str, system: str, baseline: str) -> dict | None:
    """Per-seed differences system − baseline on one table (same split: split noise cancels);
    ``worse`` when system's AUROC is lower by more than 2 standard errors."""
    base = {r.seed: r for r in group(runs, dataset, baseline)}
    pairs = [(r, base[r.seed]) for r in group(runs, dataset, system) if r.seed in base]
    if not pairs:
        return None
    d_auroc = [a.auroc - b.auroc for a, b in pairs]
    d_brier = [a.brier - b.brier for a, b in pairs]
    se = (sd(d_auroc) or 0.0) / np.sqrt(len(pairs))
    return {
        "dataset": dataset,
        "system": system,
        "baseline": baseline,
        "seeds": len(pairs),
        "d_auroc_mean": float(np.mean(d_auroc)),
        "d_auroc_sd": sd(d_auroc),
        "d_brier_mean": float(np.mean(d_brier)),
        "d_brier_sd": sd(d_brier),
        "auroc_worse_2se": bool(len(pairs) > 1 and np.mean(d_auroc) < -2 * se),
        "text": {
            "d_auroc": mean_sd(d_auroc, 3, signed=True),
            "d_brier": mean_sd(d_brier, 3, signed=True),
        },
    }


def summarise(runs: list[Run], datasets: list[str], systems: list[str]) -> list[dict]:
    """One row per table × system; "text" holds the cells as printed."""
    rows = []
    for dataset in datasets:
        for system in systems:
            runs_here = group(runs, dataset, system)
            if not runs_here:
                continue
            auroc = [r.auroc for r in runs_here]
            brier = [r.brier for r in runs_here]
            fit = [r.fit_seconds for r in runs_here]
            cpu = [r.fit_cpu_seconds for r in runs_here if r.fit_cpu_seconds is not None]
            rows.append(
                {
                    "dataset": dataset,
                    "family": system,
                    "splits": len(runs_here),
                    "n_train": runs_here[0].n_train,
                    "n_test": runs_here[0].n_test,
                    "auroc_mean": float(np.mean(auroc)),
                    "auroc_sd": sd(auroc),
                    "brier_mean": float(np.mean(brier)),
                    "brier_sd": sd(brier),
                    "fit_seconds_mean": float(np.mean(fit)),
                    "fit_seconds_total": float(np.sum(fit)),
                    "fit_cpu_seconds_mean": float(np.mean(cpu)) if cpu else None,
                    "selected": dict(Counter(r.selected for r in runs_here)),
                    "recalibrated_splits": sum(r.calibration != "none" for r in runs_here),
                    "text": {
                        "auroc": mean_sd(auroc, 3),
                        "brier": mean_sd(brier, 3),
                        "fit": f"{np.mean(fit):.1f}",
                        "cpu": f"{np.mean(cpu):.1f}" if cpu else "–",
                    },
                }
            )
    return rows


def panel_means(rows: list[dict], systems: list[str]) -> list[dict]:
    means = []
    for system in systems:
        mine = [r for r in rows if r["family"] == system]
        if mine:
            means.append(
                {
                    "family": system,
                    "tables": len(mine),
                    "auroc_mean": float(np.mean([r["auroc_mean"] for r in mine])),
                    "brier_mean": float(np.mean([r["brier_mean"] for r in mine])),
                    "fit_seconds_mean": float(np.mean([r["fit_seconds_mean"] for r in mine])),
                    "fit_seconds_total": float(np.sum([r["fit_seconds_total"] for r in mine])),
                }
            )
    return means


def fit_ratio(
    runs: list[Run], system: str, anchor: str, metric: str = "fit_seconds"
) -> float | None:
    """Total fit seconds (wall or CPU) of system over anchor's, on the (table, seed) pairs
    both ran."""
    anchor_fit = {(r.dataset, r.seed): getattr(r, metric) for r in runs if r.family == anchor}
    mine = [
        (getattr(r, metric), anchor_fit[r.dataset, r.seed])
        for r in runs
        if r.family == system and anchor_fit.get((r.dataset, r.seed)) is not None
    ]
    mine = [(a, b) for a, b in mine if a is not None]
    if not mine or not sum(b for _, b in mine):
        return None
    return sum(a for a, _ in mine) / sum(b for _, b in mine)


def comparisons(runs: list[Run], datasets: list[str], systems: list[str]) -> list[dict]:
    baselines = [b for b in ("logistic", SKLEARN_LOGISTIC, AUTOGLUON) if b in systems]
    if AUTO not in systems:
        return []
    found = (paired(runs, d, AUTO, b) for b in baselines for d in datasets)
    return [c for c in found if c is not None]


def print_tables(console: Console, rows: list[dict]) -> None:
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        table = Table(
            title=f"{dataset}: n_train {mine[0]['n_train']}, n_test {mine[0]['n_test']}, "
            f"{max(r['splits'] for r in mine)} stratified 80/20 splits (mean ± sd)"
        )
        for header in ("system", "AUROC", "Brier", "fit s", "cpu s"):
            table.add_column(header, justify="left" if header == "system" else "right")
        for row in mine:
            text = row["text"]
            table.add_row(row["family"], text["auroc"], text["brier"], text["fit"], text["cpu"])
        console.print(table)
        for row in mine:
            if row["family"] == AUTO:
                selected = ", ".join(f"{k}×{n}" for k, n in row["selected"].items())
                console.print(f"auto selected: {selected}")


def print_summary(
    console: Console, means: list[dict], ratios: dict[str, float], pairs: list[dict]
) -> None:
    table = Table(title="Panel means (each table weighs the same)")
    for header in ("system", "tables", "mean AUROC", "mean Brier", "mean fit s", "total fit s"):
        table.add_column(header, justify="left" if header == "system" else "right")
    for row in means:
        table.add_row(
            row["family"],
            str(row["tables"]),
            f"{row['auroc_mean']:.4f}",
            f"{row['brier_mean']:.4f}",
            f"{row['fit_seconds_mean']:.1f}",
            f"{row['fit_seconds_total']:.0f}",
        )
    console.print(table)
    for system, ratio in ratios.items():  # system is "<name> wall" or "<name> cpu"
        console.print(f"fit seconds {system} / autogluon (same splits): {ratio:.3f}")
    if not pairs:
        return
    table = Table(
        title="Paired differences auto − baseline per table (mean ± sd over seeds)",
        caption="ΔAUROC > 0 and ΔBrier < 0 favour auto; ! = auto's AUROC lower by > 2 SE",
    )
    for header in ("table", "baseline", "ΔAUROC", "ΔBrier", ""):
        table.add_column(header, justify="left" if header in ("table", "baseline") else "right")
    for row in pairs:
        table.add_row(
            row["dataset"],
            row["baseline"],
            row["text"]["d_auroc"],
            row["text"]["d_brier"],
            "!" if row["auroc_worse_2se"] else "",
        )
    console.print(table)


def machine_note() -> str:
    return (
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}, "
        f"{platform.platform()}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", "--splits", type=int, default=5, help="splits: seeds 0..N-1")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="start at this seed (to split a long run)"
    )
    parser.add_argument("--quick", action="store_true", help="2 seeds")
    parser.add_argument("--panel", action="store_true", help="every table in bench/panel.py")
    parser.add_argument("--datasets", help=f"comma list of {', '.join(PANEL)}")
    parser.add_argument(
        "--families",
        default=",".join(DEFAULT_SYSTEMS),
        help=f"comma list of {', '.join(ALL_SYSTEMS)}",
    )
    parser.add_argument(
        "--validation", help="TrainOptions.validation (holdout, cv, bootstrap) where it exists"
    )
    parser.add_argument(
        "--time-limit", type=float, help="TrainOptions.time_limit in seconds where it exists"
    )
    parser.add_argument("--anchors", action="store_true", help="also run AutoGluon (cached)")
    parser.add_argument("--anchor-presets", default="medium_quality")
    parser.add_argument("--anchor-time-limit", type=float, default=60.0)
    parser.add_argument("--anchor-python", type=Path, default=ANCHOR_PYTHON)
    parser.add_argument("--anchor-cache", type=Path, default=ANCHOR_CACHE)
    parser.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="fit nothing: report the runs saved in these result files together",
    )
    parser.add_argument("--output", type=Path, help="JSON results (default bench/results/)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds = 2
    if args.datasets:
        args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    else:
        args.datasets = list(PANEL if args.panel else BUNDLED)
    args.families = [f.strip() for f in args.families.split(",") if f.strip()]
    if args.anchors and AUTOGLUON not in args.families:
        args.families.append(AUTOGLUON)
    unknown = [d for d in args.datasets if d not in PANEL] + [
        f for f in args.families if f not in ALL_SYSTEMS
    ]
    if unknown:
        parser.error(f"unknown dataset or family: {', '.join(unknown)}")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if AUTOGLUON in args.families and not args.combine and not args.anchor_python.exists():
        parser.error(f"{args.anchor_python} not found: build it with `make anchors-venv`")
    if args.output is None:
        args.output = RESULTS_DIR / ("panel.json" if args.panel else "quality.json")
    return args


def read_both(table: PanelTable, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table as medserve reads its CSV export (strings) and as pandas types it."""
    path = folder / f"{table.name}.csv"
    path.touch(mode=0o600)
    table.frame().to_csv(path, index=False)
    return read_table(path), pd.read_csv(path)


def run_options(args: argparse.Namespace) -> dict:
    """The settings the runs were made with, TrainOptions' defaults included."""
    return {
        "validation": args.validation,
        "time_limit": args.time_limit,
        "train_options": {
            f.name: repr(getattr(train_options(AUTO, 0, args), f.name))
            for f in dataclasses.fields(TrainOptions)
            if f.name not in ("family", "seed")
        },
        "anchor": f"{args.anchor_presets}|time_limit={args.anchor_time_limit:g}",
    }


def fit_all(args: argparse.Namespace) -> list[Run]:
    """Every system on every (table, seed) split. The runs so far are kept in
    <output>.partial.json as they come (for --combine, should the run be cut short)."""
    partial = args.output.with_suffix(".partial.json")
    partial.parent.mkdir(parents=True, exist_ok=True)
    cache = AnchorCache(args.anchor_cache)
    total = len(args.datasets) * args.seeds * len(args.families)
    runs: list[Run] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medserve-panel-") as folder:
        frames = {name: read_both(PANEL[name], Path(folder)) for name in args.datasets}
    # Seeds outermost: an interrupted run still has every table at the first seeds.
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name in args.datasets:
            split = make_split(PANEL[name], *frames[name], seed)
            for system in args.families:
                run = run_system(split, system, args, cache)
                runs.append(run)
                partial.write_text(json.dumps({"runs": [asdict(r) for r in runs]}) + "\n")
                chosen = f" → {run.selected}" if system in (AUTO, AUTOGLUON) else ""
                print(
                    f"[{len(runs)}/{total}] {name} seed {seed} {system}{chosen}: "
                    f"AUROC {run.auroc:.3f} Brier {run.brier:.3f} fit {run.fit_seconds:.1f}s "
                    f"(elapsed {time.perf_counter() - started:.0f}s)",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


def load_runs(paths: list[Path]) -> list[Run]:
    """Runs saved by earlier invocations (their "runs"), e.g. the anchors and a new medserve."""
    fields = {f.name for f in dataclasses.fields(Run)}
    return [
        Run(**{k: v for k, v in run.items() if k in fields})
        for path in paths
        for run in json.loads(path.read_text())["runs"]
    ]


def report(console: Console, runs: list[Run], datasets: list[str], systems: list[str]) -> dict:
    """Print the per-table and summary tables; return what they show, for the JSON file.

    Only the (table, seed) splits that every system ran count, so that the means compare
    like with like when --combine joins runs of different lengths."""
    by_system = [{(r.dataset, r.seed) for r in runs if r.family == s} for s in systems]
    common = set.intersection(*by_system) if by_system else set()
    left_out = [r for r in runs if (r.dataset, r.seed) not in common]
    if left_out:
        console.print(
            f"{len(left_out)} runs left out: their split was not run by every system "
            f"({len(common)} splits remain)"
        )
    runs = [r for r in runs if (r.dataset, r.seed) in common]
    rows = summarise(runs, datasets, systems)
    means = panel_means(rows, systems)
    ratios = {
        f"{s} {label}": r
        for s in systems
        for label, metric in (("wall", "fit_seconds"), ("cpu", "fit_cpu_seconds"))
        if s != AUTOGLUON and (r := fit_ratio(runs, s, AUTOGLUON, metric)) is not None
    }
    pairs = comparisons(runs, datasets, systems)
    print_tables(console, rows)
    print_summary(console, means, ratios, pairs)
    busy = Counter(r.family for r in runs if (r.load_average or 0) > (os.cpu_count() or 1))
    if busy:
        console.print(
            "[bold]fits started with the load average above the CPU count[/] (their fit "
            "seconds, and AutoGluon's AUROC under its time limit, suffer): "
            + ", ".join(f"{system} {n}/{len(group_of(runs, system))}" for system, n in busy.items())
        )
    return {
        "summary": [{k: v for k, v in row.items() if k != "text"} for row in rows],
        "panel_means": means,
        "fit_ratio_vs_autogluon": ratios,
        "paired": [{k: v for k, v in row.items() if k != "text"} for row in pairs],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Joblib workers (EBM) start fresh interpreters: they read this, not our filters.
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    warnings.filterwarnings("ignore")
    console = Console(width=140)
    note = machine_note()
    console.print(note)
    started = time.perf_counter()
    load_at_start = os.getloadavg()
    if args.combine:
        runs = load_runs(args.combine)
        args.datasets = list(dict.fromkeys(r.dataset for r in runs))
        args.families = list(dict.fromkeys(r.family for r in runs))
    else:
        runs = fit_all(args)
    elapsed = time.perf_counter() - started
    analysis = report(console, runs, args.datasets, args.families)
    console.print(
        f"total runtime: {elapsed:.0f}s; load average at start {load_at_start[0]:.1f}, "
        f"at end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )

    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": note,
        "seeds": sorted({r.seed for r in runs}),
        "datasets": args.datasets,
        "families": args.families,
        "combined_from": [str(p) for p in args.combine or []],
        "options": (
            {str(p): json.loads(p.read_text()).get("options") for p in args.combine}
            if args.combine
            else run_options(args)
        ),
        "total_seconds": elapsed,
        "load_average": {"start": load_at_start, "end": os.getloadavg()},
        **analysis,
        "runs": [asdict(run) for run in runs],
    }
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    console.print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

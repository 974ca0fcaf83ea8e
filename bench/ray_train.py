"""`medserve train` on the local engine against `--engine ray`, in one session: the bundled
heart (920 rows) and Pima (768 rows) tables, each trained with ``auto`` (logistic and the
LightGBM capacities) and with four families (logistic, lightgbm, mlp, ebm), through the
same flow the CLI runs (read, search, select, refit, validate, report, register) in a
fresh home each time.

The local engine is the floor: the search in turn in this process. Ray is a local Ray of
``--num-cpus`` CPUs (every CPU by default) started once; its start-up (``ray.init`` and
the first tasks, which start the workers and import medserve, scikit-learn and LightGBM
there) is timed on its own line, not in the rows. Each row checks that the two engines
chose the same candidate with the same leaderboard (bar the fitting times). "search s" is
the time until the last fold was scored (the part the engine runs); the rest of `train`
(blend, recalibration, refit, report, explanations, registry) is the same on both.

    .venv/bin/python bench/ray_train.py
    .venv/bin/python bench/ray_train.py --cv 10 --families auto --num-cpus 4
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

from rich.console import Console
from rich.table import Table

import medserve
from medserve.config import Settings
from medserve.flows import TrainRequest, train_and_register
from medserve.scale.cluster import ray_session
from medserve.scale.training import RayTasks

DATASETS = Path(medserve.__file__).parent / "datasets"
TABLES = {
    "heart": (DATASETS / "heart_disease_uci.csv", {"target": "num", "positive_if": ">0"}),
    "pima": (DATASETS / "pima_diabetes.csv", {"target": "Outcome"}),
}


def warm_worker(shared: object, item: int) -> int:
    """A first task on each worker: the imports every fit needs; the worker's process id."""
    import lightgbm  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    import medserve.modeling.search  # noqa: F401

    time.sleep(0.5)  # long enough that every worker takes one
    return os.getpid()


def train_once(table: str, families: str, cv: int, parallel: RayTasks | None):
    """Seconds for one `train` and for its search (until the last fold is scored), what it
    chose (candidate, leaderboard bar the times), and the outcome."""
    path, outcome = TABLES[table]
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        request = TrainRequest(data=path, family=families, cv=cv, name=table, **outcome)
        folds_scored: list[float] = []

        def progress(what: str, done: int, total: int) -> None:
            if what.startswith("cross-validating"):
                folds_scored.append(time.perf_counter())

        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # they become the report's notices anyway
            result = train_and_register(settings, request, progress, parallel=parallel)
        seconds = time.perf_counter() - start
    board = [
        {k: v for k, v in row.to_dict().items() if k != "fit_seconds"} for row in result.leaderboard
    ]
    chosen = next(row.family for row in result.leaderboard if row.selected)
    return seconds, max(folds_scored) - start, (chosen, board), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--families", nargs="+", default=["auto", "logistic,lightgbm,mlp,ebm"])
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    runs = [(table, families) for table in args.tables for families in args.families]
    local = {run: train_once(*run, args.cv, None) for run in runs}

    start = time.perf_counter()
    with ray_session(Settings(ray_num_cpus=args.num_cpus)) as ray:
        started = time.perf_counter() - start
        tasks = RayTasks(ray)
        workers = set(tasks.map(warm_worker, None, list(range(args.num_cpus))))
        warmed = time.perf_counter() - start - started
        on_ray = {run: train_once(*run, args.cv, tasks) for run in runs}

    table = Table(title=f"train: local engine vs --engine ray ({args.num_cpus} CPUs)")
    for heading in ("table", "rows", "families", "folds", "candidates", "chosen", "local s",
                    "ray s", "local/ray", "search local s", "search ray s", "search local/ray",
                    "same"):  # fmt: skip
        table.add_column(heading, justify="left" if heading in ("table", "chosen") else "right")
    for run in runs:
        local_s, local_search_s, local_choice, result = local[run]
        ray_s, ray_search_s, ray_choice, _ = on_ray[run]
        tried = sum(1 for row in result.leaderboard if not (row.error or "").startswith("skip"))
        table.add_row(
            run[0],
            f"{result.n_train:,}",
            run[1],
            str(result.validation.folds),
            f"{tried} of {len(result.leaderboard)}",
            local_choice[0],
            f"{local_s:.1f}",
            f"{ray_s:.1f}",
            f"{local_s / ray_s:.2f}x",
            f"{local_search_s:.1f}",
            f"{ray_search_s:.1f}",
            f"{local_search_s / ray_search_s:.2f}x",
            "yes" if ray_choice == local_choice else "NO",
        )
    console = Console(width=170)
    console.print(table)
    console.print(
        f"Ray start-up (not in the rows): ray.init {started:.1f} s, then {warmed:.1f} s for "
        f"the first tasks on {len(workers)} workers (processes started, imports done there)"
    )
    console.print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if any(on_ray[run][2] != local[run][2] for run in runs):
        raise SystemExit("the engines chose differently")


if __name__ == "__main__":
    main()

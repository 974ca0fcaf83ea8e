"""Batch scoring on Ray Data (`medserve predict --engine ray`) against the single process
(`predict_file`, the floor), in one session, on the same rows: the bundled heart table
repeated to ``--rows`` rows and written as ``--shards`` Parquet shards, scored by the
heart model (logistic, and LightGBM with ``--family``), with and without explanations.

Ray is a local Ray of ``--num-cpus`` CPUs (every CPU by default), started once; its start
is timed on its own line. Each row also checks that both paths wrote the same risks.

    .venv/bin/python bench/ray_batch.py
    .venv/bin/python bench/ray_batch.py --rows 500000 --shards 16 --family lightgbm
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

import medserve
from medserve.config import Settings
from medserve.flows import TrainRequest, predict_file, train_and_register
from medserve.scale.batch import predict_on_ray
from medserve.scale.cluster import ray_session

HEART = Path(medserve.__file__).parent / "datasets" / "heart_disease_uci.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--family", default="logistic")
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--explain-rows", type=int, default=20_000)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        settings = Settings(home=work / "home", ray_num_cpus=args.num_cpus)
        request = TrainRequest(
            data=HEART, target="num", positive_if=">0", family=args.family, cv=3, name="heart"
        )
        train_and_register(settings, request)
        heart = pd.read_csv(HEART).drop(columns=["num"])
        table = Table(title=f"batch scoring, heart model ({args.family})")
        for column in ("rows", "explain", "engine", "seconds", "rows/s", "vs one process"):
            table.add_column(column, justify="right")
        started = time.perf_counter()
        with ray_session(settings) as ray:
            ray.get([ray.remote(lambda: None).remote() for _ in range(4)])
            console.print(f"Ray start: {time.perf_counter() - started:.1f} s")
            for n_rows, explain in ((args.rows, False), (args.explain_rows, True)):
                rows = pd.concat([heart] * (n_rows // len(heart) + 1)).head(n_rows)
                rows = rows.assign(id=np.arange(n_rows))
                shards = work / f"in-{n_rows}"
                shards.mkdir()
                for number, part in enumerate(np.array_split(np.arange(n_rows), args.shards)):
                    rows.iloc[part].to_parquet(shards / f"part-{number}.parquet", index=False)
                begin = time.perf_counter()
                predict_file(settings, "heart", rows, work / f"local-{n_rows}.parquet",
                             explain=explain)  # fmt: skip
                local_s = time.perf_counter() - begin
                begin = time.perf_counter()
                predict_on_ray(settings, "heart", shards, work / f"ray-{n_rows}", explain=explain)
                ray_s = time.perf_counter() - begin
                local = pd.read_parquet(work / f"local-{n_rows}.parquet").sort_values("id")
                on_ray = pd.read_parquet(work / f"ray-{n_rows}").sort_values("id")
                assert np.allclose(local.risk.to_numpy(), on_ray.risk.to_numpy())
                for engine, seconds in (("local", local_s), ("ray", ray_s)):
                    table.add_row(
                        f"{n_rows:,}",
                        "yes" if explain else "no",
                        engine,
                        f"{seconds:.2f}",
                        f"{n_rows / seconds:,.0f}",
                        f"{local_s / seconds:.2f}x",
                    )
        console.print(table)


if __name__ == "__main__":
    main()

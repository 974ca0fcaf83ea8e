"""Fit AutoGluon-Tabular on one split and write the test-set risks; run by bench/quality.py
with the anchor venv's python (.venv-anchors, ``make anchors-venv``), never imported.

Reads train.csv and test.csv (raw columns, the 0/1 outcome in ``--label``), fits
``TabularPredictor(eval_metric="roc_auc")`` with the given presets and time limit, and
writes result.json: the positive-class probability per test row, the wall-clock seconds
and CPU seconds of ``fit`` alone, the best model, the models trained and the versions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split-dir", type=Path, required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--presets", default="medium_quality")
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    import autogluon.tabular
    import pandas as pd
    from autogluon.tabular import TabularPredictor

    train = pd.read_csv(args.split_dir / "train.csv")
    test = pd.read_csv(args.split_dir / "test.csv").drop(columns=[args.label])
    with tempfile.TemporaryDirectory(prefix="medserve-ag-") as model_dir:
        predictor = TabularPredictor(
            label=args.label,
            problem_type="binary",
            eval_metric="roc_auc",
            path=model_dir,
            verbosity=0,
        )
        start, start_cpu = time.perf_counter(), time.process_time()
        predictor.fit(
            train,
            presets=args.presets,
            time_limit=args.time_limit,
            ag_args_fit={"random_seed": args.seed},
        )
        fit_seconds = time.perf_counter() - start
        fit_cpu_seconds = time.process_time() - start_cpu
        risk = predictor.predict_proba(test)[1].to_numpy()
        best = predictor.model_best
        # Which models the time limit let it train (a busy machine trains fewer).
        board = predictor.leaderboard()
        models = {row.model: round(float(row.fit_time), 2) for row in board.itertuples()}
    result = {
        "risk": [float(r) for r in risk],
        "fit_seconds": fit_seconds,
        "fit_cpu_seconds": fit_cpu_seconds,
        "best_model": best,
        "models_fit_seconds": models,
        "autogluon": autogluon.tabular.__version__,
        "pandas": pd.__version__,
        "cpus": os.cpu_count(),
    }
    path = args.split_dir / "result.json"
    path.write_text(json.dumps(result))
    path.chmod(0o600)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Start-up benchmark: how long `medserve serve` takes to be ready with the demo model, and
how much memory it holds, next to a thin FastAPI server on the same fitted pipeline.

Trains the demo's heart model (`--model logistic`, what `auto` picks for `medserve demo`)
in a temporary MEDSERVE_HOME, then starts, one after the other, each server as a
subprocess on a free loopback port:

- medserve: `python -m medserve serve` (API key, validation, audit on);
- thin FastAPI: uvicorn + FastAPI + pandas + the same scikit-learn pipeline, unpickled from
  a plain joblib file, one predict route, no key, no validation, no audit (the floor).

For each start it records the seconds from spawn until `GET /readyz` (medserve) or
`GET /healthz` (thin) first answers 200 and one prediction has been answered, and the
process's resident memory (VmRSS) then, and its peak (VmHWM). It also times
`python -c "import medserve"` and `python -c "import medserve.http.app"` and lists which heavy
runtimes (torch, shap, matplotlib, lightgbm, statsmodels, interpret) the server process
imported.

    .venv/bin/python bench/startup.py              # 3 starts of each, the median reported
    .venv/bin/python bench/startup.py --starts 5
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

import medserve

DATA_PATH = Path(medserve.__file__).parent / "datasets" / "heart_disease_uci.csv"
HEAVY = ("torch", "shap", "matplotlib", "lightgbm", "statsmodels", "interpret", "numba")
RECORD = {
    "age": 63, "sex": "Male", "dataset": "Cleveland", "cp": "typical angina",
    "trestbps": 145, "chol": 233, "fbs": True, "restecg": "lv hypertrophy", "thalch": 150,
    "exang": False, "oldpeak": 2.3, "slope": "downsloping", "ca": 0, "thal": "fixed defect",
}  # fmt: skip
TARGET_READY_S = 2.0
TARGET_RSS_MB = 300.0

THIN_SERVER = textwrap.dedent(
    """
    import sys
    import joblib, pandas as pd, uvicorn
    from fastapi import FastAPI

    pipeline = joblib.load(sys.argv[1])
    columns = list(pipeline.feature_names_in_)
    app = FastAPI()

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: dict):
        frame = pd.DataFrame(body["records"], columns=columns)
        return {"risk": pipeline.predict_proba(frame)[:, 1].tolist()}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    """
)


@dataclass
class Start:
    ready_s: float
    rss_mb: float
    peak_mb: float
    heavy: list[str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_mb(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def loaded_heavy(pid: int) -> list[str]:
    """Heavy runtimes whose shared libraries or package files the process has mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name in HEAVY if f"/site-packages/{name}/" in maps]


def medserve_cli(home: Path, *args: str) -> str:
    env = {**os.environ, "MEDSERVE_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-m", "medserve", *args], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"`medserve {' '.join(args)}` failed: {result.stderr[-2000:]}")
    return result.stdout


def time_start(
    command: list[str], env: dict, ready_url: str, predict: tuple[str, dict, dict]
) -> Start:
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with httpx.Client(timeout=5) as client:
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"{command[:4]} exited with {process.returncode}")
                try:
                    if client.get(ready_url).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.01)
            url, body, headers = predict
            answer = client.post(url, json=body, headers=headers)
            answer.raise_for_status()
        ready_s = time.perf_counter() - started
        rss, peak = memory_mb(process.pid)
        return Start(ready_s, rss, peak, loaded_heavy(process.pid))
    finally:
        process.terminate()
        process.wait(timeout=30)


def import_seconds(module: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def export_pipeline(home: Path, target: Path) -> None:
    """The registered model's scikit-learn pipeline as a plain joblib file (for the floor)."""
    code = textwrap.dedent(
        f"""
        import joblib
        from medserve.config import Settings
        from medserve.flows import load_model
        from medserve.storage import Registry
        with Registry(Settings(home={str(home)!r})) as registry:
            _, model = load_model(registry, "heart")
        joblib.dump(model.pipeline, {str(target)!r})
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=3, help="Starts of each server.")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="medserve-startup-") as scratch:
        home = Path(scratch) / "home"
        print(f"training the demo model (logistic) in {home} …", flush=True)
        medserve_cli(
            home, "train", str(DATA_PATH), "--target", "num", "--positive-if", ">0",
            "--name", "heart", "--model", "logistic",
        )  # fmt: skip
        key = medserve_cli(home, "keys", "create", "--role", "predictor", "--json")
        token = __import__("json").loads(key)["key"]
        pipeline_file = Path(scratch) / "pipeline.joblib"
        export_pipeline(home, pipeline_file)

        rows: dict[str, list[Start]] = {"medserve serve": [], "thin FastAPI (floor)": []}
        env = {**os.environ, "MEDSERVE_HOME": str(home)}
        for _ in range(args.starts):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            rows["medserve serve"].append(
                time_start(
                    [sys.executable, "-m", "medserve", "serve", "--port", str(port)],
                    env,
                    f"{base}/readyz",
                    (
                        f"{base}/v1/models/heart/predict",
                        {"records": [RECORD]},
                        {"Authorization": f"Bearer {token}"},
                    ),
                )
            )
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            rows["thin FastAPI (floor)"].append(
                time_start(
                    [sys.executable, "-c", THIN_SERVER, str(pipeline_file), str(port)],
                    env,
                    f"{base}/healthz",
                    (f"{base}/predict", {"records": [RECORD]}, {}),
                )
            )
        imports = {m: import_seconds(m, args.starts) for m in ("medserve", "medserve.http.app")}

    print()
    print(f"start-up with the demo model, median of {args.starts} starts (ready = answered one "
          "prediction)")  # fmt: skip
    header = f"{'server':<22} {'ready s':>8} {'RSS MB':>8} {'peak MB':>8}  heavy runtimes loaded"
    print(header)
    print("-" * len(header))
    for name, starts in rows.items():
        ready = statistics.median(s.ready_s for s in starts)
        rss = statistics.median(s.rss_mb for s in starts)
        peak = statistics.median(s.peak_mb for s in starts)
        heavy = ", ".join(starts[-1].heavy) or "none"
        print(f"{name:<22} {ready:>8.2f} {rss:>8.0f} {peak:>8.0f}  {heavy}")
    print()
    for module, seconds in imports.items():
        print(f"python -c 'import {module}': {seconds:.2f} s")
    served = rows["medserve serve"]
    ready = statistics.median(s.ready_s for s in served)
    rss = statistics.median(s.rss_mb for s in served)
    print(
        f"target: ready ≤ {TARGET_READY_S} s ({'MET' if ready <= TARGET_READY_S else 'MISSED'}: "
        f"{ready:.2f} s), RSS ≤ {TARGET_RSS_MB:.0f} MB "
        f"({'MET' if rss <= TARGET_RSS_MB else 'MISSED'}: {rss:.0f} MB)"
    )
    load = os.getloadavg()[0]
    print(f"host: {os.cpu_count()} cores, load average {load:.2f} (other work skews every row)")


if __name__ == "__main__":
    main()

"""What the durable audit record costs: one-record predictions with the record committed
before the answer leaves (the default) next to the record submitted after the answer
(``RequestBookkeeping(durable_audit=False)``, the behaviour before).

Trains the heart model (logistic) in a temporary MEDSERVE_HOME, creates a predictor key,
and for each mode builds the app with ``create_app``, serves it with uvicorn from a thread
of this process on a loopback port, and measures:

- sequential: one keep-alive httpx client, one request at a time (p50/p99 latency);
- concurrent: ``--concurrency`` httpx.AsyncClient workers (p50/p99 and requests/s).

The load generator shares this process (and its GIL) with the server, the same for both
modes, so absolute figures are conservative; compare the rows. Modes alternate for
``--rounds`` rounds; each row is the median over rounds. At the end it checks that each
mode's database holds exactly one audit record per request sent.

    .venv/bin/python bench/audit_durability.py
    .venv/bin/python bench/audit_durability.py --sequential 500 --concurrent 4000 --rounds 3
    .venv/bin/python bench/audit_durability.py --database-url postgresql+psycopg://...

``--kill-9`` instead runs the attacker's check: `medserve serve` as a subprocess, 16
clients predicting for ``--kill-after`` seconds, then SIGKILL; it compares the answers the
clients received (200) with the predict records in the database. ``--server-src DIR``
serves another checkout's code (e.g. a `git worktree` of the commit before) for the
same check on the old behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import text

import medserve
from medserve.config import Settings
from medserve.flows import TrainRequest, train_and_register
from medserve.http.app import create_app
from medserve.http.observability import RequestBookkeeping
from medserve.security.api_keys import ApiKeyStore

DATA_PATH = Path(medserve.__file__).parent / "datasets" / "heart_disease_uci.csv"
PATH = "/v1/models/heart/predict"
MODES = {"durable (before answer)": True, "after answer (old)": False}


@dataclass
class Row:
    mode: str
    load: str
    requests: int
    p50_ms: float
    p99_ms: float
    per_s: float


def records() -> list[dict[str, Any]]:
    """The heart CSV's rows as bench/serving.py sends them (numbers as numbers)."""
    from serving import heart_records  # bench/serving.py, next to this script

    return heart_records()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def with_audit_mode(app: Any, durable: bool) -> Any:
    """Set RequestBookkeeping's mode before the app builds its middleware stack."""
    for middleware in app.user_middleware:
        if middleware.cls is RequestBookkeeping:
            middleware.kwargs["durable_audit"] = durable
    return app


class Served:
    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def sequential(url: str, token: str, bodies: list[dict], n: int) -> tuple[list[float], float]:
    headers = {"Authorization": f"Bearer {token}"}
    latencies = []
    with httpx.Client(base_url=url, headers=headers) as client:
        for body in bodies[:20]:
            client.post(PATH, json=body).raise_for_status()
        started = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            client.post(PATH, json=bodies[i % len(bodies)]).raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1000)
        return latencies, time.perf_counter() - started


async def concurrent(
    url: str, token: str, bodies: list[dict], n: int, workers: int
) -> tuple[list[float], float]:
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    remaining = iter(range(n))
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:

        async def worker() -> None:
            for i in remaining:
                t0 = time.perf_counter()
                response = await client.post(PATH, json=bodies[i % len(bodies)])
                response.raise_for_status()
                latencies.append((time.perf_counter() - t0) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return latencies, time.perf_counter() - started


def audit_count(app: Any) -> int:
    with app.state.registry.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM audit_log")).scalar_one())


def measure(args: argparse.Namespace, seed: Settings, bodies: list[dict]) -> list[Row]:
    rows: dict[tuple[str, str], list[Row]] = {}
    for round_number in range(args.rounds):
        for mode, durable in MODES.items():
            settings = Settings(home=seed.home, database_url=args.database_url)
            app = with_audit_mode(create_app(settings), durable)
            _, token = ApiKeyStore(app.state.registry.engine).create("predictor", name="bench")
            before = audit_count(app)
            with Served(app) as served:
                url = f"http://127.0.0.1:{served.port}"
                seq_ms, seq_s = sequential(url, token, bodies, args.sequential)
                conc_ms, conc_s = asyncio.run(
                    concurrent(url, token, bodies, args.concurrent, args.concurrency)
                )
            sent = 20 + args.sequential + args.concurrent
            recorded = audit_count(app) - before
            if recorded != sent:
                raise SystemExit(f"{mode}: {recorded} audit records for {sent} requests")
            for load, latencies, elapsed in (
                ("sequential", seq_ms, seq_s),
                (f"c={args.concurrency}", conc_ms, conc_s),
            ):
                row = Row(
                    mode,
                    load,
                    len(latencies),
                    percentile(latencies, 0.5),
                    percentile(latencies, 0.99),
                    len(latencies) / elapsed,
                )
                rows.setdefault((mode, load), []).append(row)
        print(f"round {round_number + 1}/{args.rounds} done", flush=True)
    return [
        Row(
            mode,
            load,
            runs[0].requests,
            statistics.median(r.p50_ms for r in runs),
            statistics.median(r.p99_ms for r in runs),
            statistics.median(r.per_s for r in runs),
        )
        for (mode, load), runs in rows.items()
    ]


def print_table(rows: list[Row]) -> None:
    print(f"\n{'mode':<26}{'load':<12}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}")
    for row in sorted(rows, key=lambda r: (r.load, r.mode)):
        print(
            f"{row.mode:<26}{row.load:<12}{row.requests:>9}"
            f"{row.p50_ms:>9.2f}{row.p99_ms:>9.2f}{row.per_s:>9.0f}"
        )


def kill_check(args: argparse.Namespace) -> None:
    """Answers received vs audit records after `kill -9` of a loaded server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSERVE_")}
    if args.server_src:
        env["PYTHONPATH"] = str(Path(args.server_src).resolve())
    with tempfile.TemporaryDirectory(prefix="medserve-bench-kill-") as tmp:
        env["MEDSERVE_HOME"] = str(Path(tmp) / "home")
        env["MEDSERVE_RATE_LIMIT_PER_MINUTE"] = "0"

        def cli(*cli_args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "medserve", *cli_args],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            return done.stdout

        cli("train", str(DATA_PATH), "--name", "heart", "--target", "num",
            "--positive-if", ">0", "--model", "logistic", "--cv", "3")  # fmt: skip
        token = cli("keys", "create", "--role", "predictor", "--name", "bench", "--json")
        token = json.loads(token)["key"]
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "medserve", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        bodies = [{"records": [record]} for record in records()[:200]]
        answered = asyncio.run(_until_killed(url, token, bodies, server, args.kill_after))
        server.wait()
        counted = cli("audit", "export")
        predicts = sum('/predict"' in line for line in counted.splitlines())
    lost = max(0, answered - predicts)
    print(
        f"answered 200: {answered}; predict records in the trail: {predicts}; "
        f"answered without a record: {lost} ({100 * lost / max(answered, 1):.2f}%)"
    )


async def _until_killed(
    url: str, token: str, bodies: list[dict], server: subprocess.Popen, after_s: float
) -> int:
    answered = 0
    stop_at = time.monotonic() + after_s
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=5) as client:

        async def worker(offset: int) -> None:
            nonlocal answered
            i = offset
            while server.poll() is None:
                try:
                    response = await client.post(PATH, json=bodies[i % len(bodies)])
                except httpx.TransportError:
                    return
                answered += response.status_code == 200
                i += 16

        async def killer() -> None:
            while time.monotonic() < stop_at:
                await asyncio.sleep(0.05)
            server.send_signal(signal.SIGKILL)

        await asyncio.gather(killer(), *(worker(n) for n in range(16)))
    return answered


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--concurrent", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--kill-9", action="store_true", help="the kill -9 check instead")
    parser.add_argument("--kill-after", type=float, default=5.0)
    parser.add_argument("--server-src", default=None, help="serve this checkout's src/")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.kill_9:
        kill_check(args)
        return
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("medserve").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="medserve-bench-audit-") as tmp:
        seed = Settings(home=Path(tmp) / "home", database_url=args.database_url)
        train_and_register(
            seed,
            TrainRequest(
                data=DATA_PATH, name="heart", target="num", positive_if=">0", family="logistic"
            ),
        )
        bodies = [{"records": [record]} for record in records()[:200]]
        print_table(measure(args, seed, bodies))


if __name__ == "__main__":
    main()

"""Dynamic batching benchmark: a notes model (the text family, a sentence encoder per
call) served by `medserve serve` on loopback, with batching off and on (the default
policy: 32 records, 5 ms), at concurrency 1, 8 and 32, one record per request.

Trains a small text-family model on synthetic notes (tests/support/notes.py style) in a
temporary MEDSERVE_HOME, then for each setting starts a server subprocess and sends a
bounded number of requests per concurrency level from httpx.AsyncClient in this process.
Every note is new (a counter in it), so the encoder's embedding cache never answers.
Batch sizes come from the server's /metrics (medserve_batch_records): the mean exactly,
the max as the upper bound of the highest bucket reached.

    .venv/bin/python bench/batching.py                 # 200 requests per level
    .venv/bin/python bench/batching.py --requests 100 --wait-ms 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from medserve.config import Settings
from medserve.flows import TrainRequest, train_and_register
from medserve.security.api_keys import ApiKeyStore
from medserve.storage import Registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.notes import FILLER, LOWERING, RAISING, notes_table  # noqa: E402

LEVELS = (1, 8, 32)
BUCKET = re.compile(r'medserve_batch_records_bucket\{le="([^"]+)",model="notes"\} ([0-9.e+]+)')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def note(i: int) -> str:
    """A new note each time (the counter), in the training notes' style."""
    parts = [FILLER[i % 4], (RAISING + LOWERING)[i % 6], f"Reviewed at visit {i}."]
    return " ".join(parts)


def batch_histogram(metrics: str) -> dict[float, float]:
    return {float(le): float(n) for le, n in BUCKET.findall(metrics)}


def batch_sizes(before: str, after: str) -> tuple[float, str]:
    """(mean records per batch, max as the top bucket reached) between two scrapes."""

    def total(text: str, what: str) -> float:
        found = re.search(rf'medserve_batch_records_{what}\{{model="notes"\}} ([0-9.e+]+)', text)
        return float(found.group(1)) if found else 0.0

    count = total(after, "count") - total(before, "count")
    if not count:
        return 1.0, "1 (off)"
    mean = (total(after, "sum") - total(before, "sum")) / count
    start, end = batch_histogram(before), batch_histogram(after)
    reached = [le for le, n in end.items() if n - start.get(le, 0) < count]
    top = min((le for le in end if end[le] - start.get(le, 0) >= count), default=float("inf"))
    return mean, f"<={top:g}" if reached else "1"


async def load(url: str, token: str, concurrency: int, n: int, offset: int) -> list[float]:
    latencies: list[float] = []
    counter = iter(range(n))
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as c:

        async def worker() -> None:
            for i in counter:
                body = {"records": [{"age": 40 + i % 40, "note": note(offset + i)}]}
                started = time.perf_counter()
                answer = await c.post("/v1/models/notes/predict", json=body)
                latencies.append(time.perf_counter() - started)
                answer.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def serve(home: Path, batching: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "MEDSERVE_HOME": str(home), "MEDSERVE_BATCHING": batching}
    env["MEDSERVE_RATE_LIMIT_PER_MINUTE"] = "0"
    server = subprocess.Popen(
        [sys.executable, "-m", "medserve", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per level")
    parser.add_argument("--max-size", type=int, default=32)
    parser.add_argument("--wait-ms", type=float, default=5.0)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="medserve-batching-") as folder:
        home = Path(folder) / "home"
        settings = Settings(home=home)
        request = TrainRequest(
            data=notes_table(240, seed=4), source_name="notes", name="notes", target="event",
            text=["note"], family="text", deid=True, cv=3, validation="holdout",
        )  # fmt: skip
        train_and_register(settings, request)
        with Registry(settings) as registry:
            _, token = ApiKeyStore(registry.engine).create("admin", name="bench")

        policy = {"max_size": options.max_size, "wait_ms": options.wait_ms}
        rows, offset = [], 0
        for label, batching in (("off", {"notes": None}), ("on", {"notes": policy})):
            port = free_port()
            server = serve(home, json.dumps(batching), port)
            url = f"http://127.0.0.1:{port}"
            try:
                asyncio.run(load(url, token, 4, 20, 10_000_000))  # warm up the encoder
                for concurrency in LEVELS:
                    scrape = {"Authorization": f"Bearer {token}"}
                    before = httpx.get(f"{url}/metrics", headers=scrape).text
                    started = time.perf_counter()
                    latencies = asyncio.run(load(url, token, concurrency, options.requests, offset))
                    elapsed = time.perf_counter() - started
                    offset += options.requests
                    after = httpx.get(f"{url}/metrics", headers=scrape).text
                    mean, largest = batch_sizes(before, after)
                    ms = np.array(latencies) * 1000
                    rows.append(
                        (
                            concurrency, label, len(latencies) / elapsed,
                            statistics.median(ms), float(np.percentile(ms, 99)), mean, largest,
                        )
                    )  # fmt: skip
            finally:
                server.terminate()
                server.wait(timeout=60)

    print(f"notes model, {options.requests} one-record requests per level; batching on = "
          f"max {options.max_size} records, {options.wait_ms:g} ms wait")  # fmt: skip
    print("| concurrency | batching | requests/s | p50 ms | p99 ms | mean batch | max batch |")
    print("|---:|:---|---:|---:|---:|---:|---:|")
    for level in LEVELS:
        for row in rows:
            if row[0] == level:
                c, label, rps, p50, p99, mean, largest = row
                print(f"| {c} | {label} | {rps:.1f} | {p50:.1f} | {p99:.1f} | {mean:.1f} | "
                      f"{largest} |")  # fmt: skip


if __name__ == "__main__":
    main()

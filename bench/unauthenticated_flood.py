"""Unauthenticated flood: how much a legitimate caller's latency suffers while clients
without an API key send large bodies (issue 10, finding 4).

Trains `heart` (logistic) with the CLI in a temporary MEDSERVE_HOME, creates a predictor
key, starts `python -m medserve serve` on a free loopback port (one uvicorn worker, one
event loop, as deployed; per-key rate limit off), then measures one-record prediction
latency from one keep-alive httpx client:

- alone;
- while FLOODERS connections (in another process) send 16 MiB bodies of numbers to the
  predict route, without a key, one after the other on keep-alive connections;
- the same with a well-formed but unknown key (a database lookup per request).

Each phase is bounded: REQUESTS predictions or PHASE_LIMIT_S seconds, whichever comes
first (before the fix, one flood body held the event loop for about a second).

    .venv/bin/python bench/unauthenticated_flood.py
    .venv/bin/python bench/unauthenticated_flood.py --address-limit 0  # no per-address limit
    PYTHONPATH=/tmp/before/src .venv/bin/python bench/unauthenticated_flood.py  # old code

The server runs with this interpreter and this PYTHONPATH, so pointing PYTHONPATH at a
checkout of older code (`git worktree add /tmp/before HEAD`) measures that code.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

import medserve

DATA_PATH = Path(medserve.__file__).parent / "datasets" / "heart_disease_uci.csv"
PREDICT_PATH = "/v1/models/heart/predict"
REQUESTS = 200
PHASE_LIMIT_S = 30.0
FLOODERS = 2
FLOOD_BODY_BYTES = 16 * 1024 * 1024
ONE_RECORD = {
    "age": 63, "sex": "Male", "cp": "typical angina", "trestbps": 145, "chol": 233,
    "fbs": True, "restecg": "lv hypertrophy", "thalch": 150, "exang": False, "oldpeak": 2.3,
    "slope": "downsloping", "ca": 0, "thal": "fixed defect", "dataset": "Cleveland",
}  # fmt: skip
UNKNOWN_KEY = "ms_000000000000_" + "x" * 43


def service_env(home: Path, address_limit: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSERVE_")}
    env["MEDSERVE_HOME"] = str(home)
    env["MEDSERVE_RATE_LIMIT_PER_MINUTE"] = "0"
    if address_limit is not None:
        env["MEDSERVE_UNAUTHENTICATED_PER_MINUTE"] = str(address_limit)
    return env


def medserve_cli(home: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "medserve", *args],
        env=service_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"`medserve {' '.join(args)}` failed: {result.stderr[-2000:]}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(home: Path, address_limit: int | None) -> Iterator[tuple[str, int]]:
    """`medserve serve` on a free loopback port until the block ends (SIGTERM, then wait)."""
    port = free_port()
    command = [
        sys.executable, "-m", "medserve", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    log_path = home / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=service_env(home, address_limit), stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        yield url, port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(45)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def numbers_body(size: int) -> bytes:
    """``{"records": [0, 1, 2, ...]}`` padded to ``size`` bytes: cheap to send, dear to parse."""
    head, tail = b'{"records": [', b"]}"
    numbers = bytearray()
    n = 0
    while len(numbers) < size - len(head) - len(tail) - 16:
        numbers += b"%d," % n
        n += 1
    numbers += b"0"
    return head + bytes(numbers) + tail


def read_response(connection: socket.socket, buffered: bytes) -> tuple[int, bytes, bool]:
    """Status, what was read past this response, and whether the server will close."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, rest[length:], headers.get("connection", "").lower() == "close"


def flood(port: int, token: str | None, stop: Any, results: multiprocessing.Queue) -> None:
    """Send 16 MiB bodies in a loop on one keep-alive connection (a new one when closed);
    each answer's status (or error) goes to ``results``."""
    body = numbers_body(FLOOD_BODY_BYTES)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = (
        f"POST {PREDICT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    connection: socket.socket | None = None
    buffered = b""
    while not stop.is_set():
        try:
            if connection is None:
                connection = socket.create_connection(("127.0.0.1", port), timeout=30)
                buffered = b""
            connection.sendall(request)
            status, buffered, closing = read_response(connection, buffered)
            results.put(str(status))
            if closing:
                connection.close()
                connection = None
        except OSError as error:  # reset, timeout: count it and reconnect
            results.put(type(error).__name__)
            if connection is not None:
                connection.close()
            connection = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def legitimate_latencies(url: str, token: str) -> list[float]:
    """Up to REQUESTS one-record predictions, or PHASE_LIMIT_S seconds; milliseconds."""
    body = {"records": [ONE_RECORD]}
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for _ in range(5):  # warm-up
            client.post(PREDICT_PATH, json=body).raise_for_status()
        deadline = time.monotonic() + PHASE_LIMIT_S
        while len(latencies) < REQUESTS and time.monotonic() < deadline:
            started = time.perf_counter()
            response = client.post(PREDICT_PATH, json=body)
            latencies.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return latencies


def phase(url: str, port: int, token: str, flood_token: str | None, flooders: int) -> dict:
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    stop = context.Event()
    processes = [
        context.Process(target=flood, args=(port, flood_token, stop, results))
        for _ in range(flooders)
    ]
    for process in processes:
        process.start()
    if flooders:
        time.sleep(1.0)  # the flood is under way
    latencies = legitimate_latencies(url, token)
    stop.set()  # each flooder ends after its current request
    for process in processes:
        process.join(30)
        if process.is_alive():
            process.terminate()
    statuses: Counter[str] = Counter()
    while not results.empty():
        statuses[results.get()] += 1
    return {
        "n": len(latencies),
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "flood_statuses": dict(statuses),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-home", action="store_true")
    parser.add_argument(
        "--address-limit",
        type=int,
        help="MEDSERVE_UNAUTHENTICATED_PER_MINUTE for the server (default: the service's; "
        "0: off, to see what answering before the body alone does)",
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="medserve-flood-")) / "home"
    medserve_cli(
        home, "train", str(DATA_PATH), "--target", "num", "--positive-if", ">0",
        "--model", "logistic", "--name", "heart", "--cv", "3", "--json",
    )  # fmt: skip
    token = json.loads(medserve_cli(home, "keys", "create", "--role", "predictor", "--json"))["key"]
    code_under_test = os.environ.get("PYTHONPATH") or str(Path(medserve.__file__).parent.parent)
    rows = {}
    with running_server(home, args.address_limit) as (url, port):
        rows["alone"] = phase(url, port, token, None, 0)
        rows[f"{FLOODERS} x 16 MiB, no key"] = phase(url, port, token, None, FLOODERS)
        rows[f"{FLOODERS} x 16 MiB, unknown key"] = phase(url, port, token, UNKNOWN_KEY, FLOODERS)
    limit = "service default" if args.address_limit is None else args.address_limit
    print(f"code: {code_under_test}  (one uvicorn worker, loopback; address limit: {limit})")
    print(f"{'legitimate caller, 1 record':<32} {'n':>5} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}"
          "  flood answers")  # fmt: skip
    for name, row in rows.items():
        print(
            f"{name:<32} {row['n']:>5} {row['p50_ms']:>9.1f} {row['p99_ms']:>9.1f} "
            f"{row['max_ms']:>9.1f}  {row['flood_statuses'] or '-'}"
        )
    if not args.keep_home:
        import shutil

        shutil.rmtree(home.parent, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Serving benchmark: the HTTP prediction service as deployed (API key, validation and
audit on, one uvicorn worker), next to the in-process floors it is built on.

Trains the heart model through the CLI in a temporary MEDSERVE_HOME, creates a predictor
key, starts `medserve serve` as a subprocess on loopback (pinned to core 0 when
`taskset` is there and the host has two or more cores; the load generator and this
process then run on core 1), and measures:

- in process, no HTTP: the scikit-learn reference (`model.predict_risk` on a DataFrame),
  the service's own path (`validate_records` + `FastScorer.risk`, and all of it with the
  label and band as the route answers: `Predictor.predict`) and the API-key lookup, for
  one record and a 1,000-record batch;
- over HTTP: single-record latency from one keep-alive httpx client, the same from `wrk`
  at one connection (a client with far less overhead of its own), throughput at
  concurrency 16 (`wrk`, else httpx.AsyncClient in a separate process) and a
  1,000-record batch request.

Afterwards it stops the server (SIGTERM, so the audit writer drains) and checks that the
audit trail verifies and holds exactly one record per predict request sent (the health
checks it polls leave none).

    .venv/bin/python bench/serving.py                       # lightgbm, 3,000 requests at c=16
    .venv/bin/python bench/serving.py --family logistic
    .venv/bin/python bench/serving.py --profile-out /tmp/serve.svg   # py-spy during c=16
    .venv/bin/python bench/serving.py --keep-home                    # keep MEDSERVE_HOME

Results go to bench/results/serving.json, one entry per family.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

import medserve

DATA_PATH = Path(medserve.__file__).parent / "datasets" / "heart_disease_uci.csv"
RESULTS_PATH = Path(__file__).parent / "results" / "serving.json"
MODEL_NAME = "heart"
PREDICT_PATH = f"/v1/models/{MODEL_NAME}/predict"
TARGET_P50_MS = 2.5
TARGET_RPS = 500.0
MLFLOW_REFERENCE = "MLflow server, same kind of model: 8.8 ms p50, 115 req/s"
BATCH_RECORDS = 1000
SERVER_CORE, CLIENT_CORE = 0, 1
SERVER_START_TIMEOUT_S = 120
SERVER_STOP_TIMEOUT_S = 45


@dataclass
class Row:
    """One line of the results table; latencies in milliseconds."""

    section: str
    name: str
    n_calls: int
    records_per_call: int
    p50_ms: float
    p95_ms: float
    p99_ms: float | None = None
    requests_per_s: float | None = None
    records_per_s: float | None = None
    errors: int = 0
    note: str = ""


@dataclass
class Bench:
    """Everything a run learns; written to serving.json."""

    family: str
    settings: dict[str, Any]
    environment: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    audit: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Records


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """CSV rows as a JSON client sends them: numbers as numbers, empty cells as null,
    TRUE/FALSE as booleans (the same conversion as tests/support/servers.py)."""
    records = []
    for row in frame.to_dict(orient="records"):
        record: dict[str, Any] = {}
        for column, value in row.items():
            if pd.isna(value):
                record[column] = None
            elif isinstance(value, str):
                try:
                    record[column] = float(value) if "." in value else int(value)
                except ValueError:
                    record[column] = {"TRUE": True, "FALSE": False}.get(value, value)
            else:
                record[column] = value
        records.append(record)
    return records


def heart_records() -> list[dict[str, Any]]:
    frame = pd.read_csv(DATA_PATH, dtype=str, keep_default_na=False, na_values=[""])
    return json_records(frame.drop(columns=["id", "num"]))


def batch_of(records: Sequence[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """``size`` records, cycling through ``records``."""
    return [records[i % len(records)] for i in range(size)]


def body(records: Sequence[dict[str, Any]]) -> bytes:
    return json.dumps({"records": list(records)}, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------
# Timing helpers


def percentile(values_ms: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100), linear between order statistics."""
    ordered = sorted(values_ms)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def time_calls(call: Callable[[], object], n_calls: int, warmup: int) -> list[float]:
    """Wall time of each of ``n_calls`` calls, in ms, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    timings = []
    for _ in range(n_calls):
        start = time.perf_counter_ns()
        call()
        timings.append((time.perf_counter_ns() - start) / 1e6)
    return timings


def latency_row(
    section: str, name: str, timings_ms: Sequence[float], records_per_call: int, **extra: Any
) -> Row:
    p50 = statistics.median(timings_ms)
    return Row(
        section=section,
        name=name,
        n_calls=len(timings_ms),
        records_per_call=records_per_call,
        p50_ms=p50,
        p95_ms=percentile(timings_ms, 95),
        p99_ms=percentile(timings_ms, 99),
        records_per_s=records_per_call / (p50 / 1000) if p50 > 0 else None,
        **extra,
    )


# ---------------------------------------------------------------------------------------
# CPU pinning, subprocesses, the server


def pinning_available() -> bool:
    return shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) >= 2


def pinned(command: list[str], core: int | None) -> list[str]:
    return ["taskset", "-c", str(core), *command] if core is not None else command


def medserve_cli(home: Path, *args: str) -> str:
    """Run `python -m medserve ARGS` with MEDSERVE_HOME=home; its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "medserve", *args],
        env=service_env(home),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`medserve {' '.join(args)}` failed ({result.returncode}): {result.stderr[-2000:]}"
        )
    return result.stdout


def service_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSERVE_")}
    env["MEDSERVE_HOME"] = str(home)
    env["MEDSERVE_RATE_LIMIT_PER_MINUTE"] = "0"
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path


@contextmanager
def running_server(home: Path, core: int | None) -> Iterator[Server]:
    """`medserve serve` on a free loopback port until the block ends (SIGTERM, then wait)."""
    port = free_port()
    log_path = home / "serve.log"
    command = [
        sys.executable, "-m", "medserve", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            pinned(command, core), env=service_env(home), stdout=log, stderr=subprocess.STDOUT
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        stop(process)


def wait_until_healthy(server: Server) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"the server exited ({server.process.returncode}): "
                f"{server.log_path.read_text()[-2000:]}"
            )
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not answer /healthz within {SERVER_START_TIMEOUT_S} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------------------
# In-process floors


def in_process_rows(home: Path, records: list[dict[str, Any]], token: str) -> list[Row]:
    from medserve.config import Settings
    from medserve.scoring.catalog import ServedModel
    from medserve.scoring.compiled import FastScorer
    from medserve.scoring.encoding import records_frame
    from medserve.scoring.predictor import Predictor
    from medserve.scoring.validation import validate_records
    from medserve.security.api_keys import ApiKeyStore
    from medserve.storage import Registry

    section = "in-proc"
    settings = Settings(home=home)
    with Registry(settings) as registry:
        version = registry.get(MODEL_NAME)
        model = registry.load(version)
        scorer = FastScorer.from_model(model)
        served = ServedModel.of(version, model)
        predictor = Predictor(settings.bands_for, settings.max_records)
        keys = ApiKeyStore(registry.engine)
        one, batch = records[:1], batch_of(records, BATCH_RECORDS)
        one_frame = records_frame(model.schema, one)
        batch_frame = records_frame(model.schema, batch)

        def fast(chunk: list[dict[str, Any]]) -> Callable[[], object]:
            def call() -> object:
                if validate_records(model.schema, chunk):
                    raise RuntimeError("bench records fail validation")
                return scorer.risk(chunk)

            return call

        rows = [
            latency_row(
                section,
                "sklearn predict_risk (DataFrame)",
                time_calls(lambda: model.predict_risk(one_frame), 1000, 50),
                1,
            ),
            latency_row(section, "validate + FastScorer.risk", time_calls(fast(one), 5000, 200), 1),
            latency_row(
                section,
                "Predictor.predict (+ label, band)",
                time_calls(lambda: predictor.predict(served, one), 5000, 200),
                1,
            ),
            latency_row(
                section,
                "sklearn predict_risk (DataFrame)",
                time_calls(lambda: model.predict_risk(batch_frame), 50, 3),
                BATCH_RECORDS,
            ),
            latency_row(
                section,
                "validate + FastScorer.risk",
                time_calls(fast(batch), 100, 5),
                BATCH_RECORDS,
            ),
            latency_row(
                section,
                "Predictor.predict (+ label, band)",
                time_calls(lambda: predictor.predict(served, batch), 100, 5),
                BATCH_RECORDS,
            ),
            latency_row(
                section,
                "API-key authenticate (SQLite)",
                time_calls(lambda: keys.authenticate(token), 2000, 100),
                0,
                note="per request; records/s not meaningful",
            ),
        ]
        rows[-1].records_per_s = None
        if not scorer.exact_fast_path:
            for row in rows:
                if row.name.startswith(("validate", "Predictor")):
                    row.note = "no exact fast path: falls back to the reference pipeline"
    return rows


# ---------------------------------------------------------------------------------------
# HTTP: sequential client, wrk, httpx load generator


class Sent:
    """How many predict requests this bench sent: the audit trail must hold as many records."""

    def __init__(self) -> None:
        self.count = 0


def sequential_row(
    url: str, token: str, bodies: list[bytes], n_calls: int, warmup: int, cap_s: float, sent: Sent
) -> Row:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    timings, errors = [], 0
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        deadline = time.monotonic() + cap_s
        for i in range(warmup + n_calls):
            if time.monotonic() > deadline:
                break
            start = time.perf_counter_ns()
            response = client.post(PREDICT_PATH, content=bodies[i % len(bodies)])
            elapsed_ms = (time.perf_counter_ns() - start) / 1e6
            sent.count += 1
            if i >= warmup:
                timings.append(elapsed_ms)
                errors += response.status_code != 200
    records = json.loads(bodies[0])["records"]
    return latency_row(
        "HTTP",
        "httpx.Client keep-alive, sequential",
        timings,
        len(records),
        errors=errors,
        note=f"after {warmup} warm-up requests; req/s = 1 / mean latency",
        requests_per_s=1000 / statistics.mean(timings),
    )


# wrk runs one thread per connection, so each thread's Lua state sees one connection's
# requests in order: it sends exactly its share of the requests, stops after the last
# answer (nothing is left in flight, so the audit count is exact), and times its own
# window with clock_gettime, because wrk's main thread sleeps the whole -d duration.
WRK_SCRIPT = """\
-- Generated by bench/serving.py.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1e6 + tonumber(clock.tv_nsec) / 1e3
end

local bodies = @@BODIES@@
local headers = {["Authorization"] = "Bearer @@TOKEN@@", ["Content-Type"] = "application/json"}
local total = @@TOTAL@@
local n_threads = @@THREADS@@
local threads = {}

function setup(thread)
  local index = #threads
  local share = math.floor(total / n_threads)
  if index < total % n_threads then share = share + 1 end
  thread:set("limit", share)
  thread:set("start_body", (index * 97) % #bodies)
  -- wrk calls request() once on the first thread's state to check it, before any is sent.
  if index == 0 then thread:set("unsent_calls", 1) else thread:set("unsent_calls", 0) end
  table.insert(threads, thread)
end

function init(args)
  calls, sent, received, non_200 = 0, 0, 0, 0
  first_us, last_us = 0, 0
  next_body = start_body
end

function request()
  calls = calls + 1
  sent = math.max(0, calls - unsent_calls)
  if sent == 1 then first_us = now_us() end
  next_body = next_body % #bodies + 1
  return wrk.format("POST", "@@PATH@@", headers, bodies[next_body])
end

function response(status, headers, body)
  received = received + 1
  if status ~= 200 then non_200 = non_200 + 1 end
  if received >= limit then
    last_us = now_us()
    io.write("WRK_THREAD_DONE\\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local sent, received, non_200, finished = 0, 0, 0, 0
  local first, last = math.huge, 0
  for _, thread in ipairs(threads) do
    sent = sent + thread:get("sent")
    received = received + thread:get("received")
    non_200 = non_200 + thread:get("non_200")
    if thread:get("first_us") > 0 then first = math.min(first, thread:get("first_us")) end
    if thread:get("last_us") > 0 then
      finished = finished + 1
      last = math.max(last, thread:get("last_us"))
    end
  end
  local capped = finished < #threads
  local window_us = summary.duration
  if not capped then window_us = last - first end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"sent":%d,"received":%d,"non_200":%d,"window_us":%.0f,"capped":%s,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%f}\\n',
    sent, received, non_200, window_us, tostring(capped), e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean))
end
"""


def wrk_script(path: Path, token: str, bodies: list[bytes], total: int, concurrency: int) -> Path:
    quoted = ", ".join(f"[==[{b.decode()}]==]" for b in bodies)
    text = (
        WRK_SCRIPT.replace("@@TOKEN@@", token)
        .replace("@@TOTAL@@", str(total))
        .replace("@@THREADS@@", str(concurrency))
        .replace("@@PATH@@", PREDICT_PATH)
        .replace("@@BODIES@@", "{" + quoted + "}")
    )
    path.write_text(text)
    return path


def ensure_wrk() -> str | None:
    """wrk's path; tries `apt-get install -y wrk` once when it is missing (root only)."""
    found = shutil.which("wrk")
    if found or shutil.which("apt-get") is None or os.geteuid() != 0:
        return found
    print("wrk is not installed; trying `apt-get install -y wrk` once", file=sys.stderr)
    subprocess.run(
        ["apt-get", "install", "-y", "wrk"], capture_output=True, timeout=300, check=False
    )
    return shutil.which("wrk")


def run_wrk(
    wrk: str,
    script: Path,
    url: str,
    concurrency: int,
    cap_s: float,
    core: int | None,
) -> dict[str, Any]:
    """wrk with one thread per connection; interrupted (SIGINT makes it report at once)
    as soon as every thread has sent and received its share."""
    command = pinned(
        [wrk, f"-t{concurrency}", f"-c{concurrency}", f"-d{math.ceil(cap_s)}s",
         "--timeout", "10s", "-s", str(script), url],
        core,
    )  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    lines, finished = [], 0
    for line in process.stdout:  # wrk exits by itself after -d at the latest
        lines.append(line)
        if line.startswith("WRK_THREAD_DONE"):
            finished += 1
            if finished == concurrency:
                process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    for line in [*lines, *stdout.splitlines()]:
        if line.startswith("WRK_RESULT "):
            return json.loads(line.removeprefix("WRK_RESULT "))
    raise RuntimeError(f"wrk gave no result ({process.returncode}): {''.join(lines)}\n{stderr}")


def wrk_row(name: str, result: dict[str, Any], records_per_request: int) -> Row:
    window_s = result["window_us"] / 1e6
    errors = (
        result["non_200"]
        + result["connect_errors"]
        + result["read_errors"]
        + result["write_errors"]
        + result["timeouts"]
    )
    rps = result["received"] / window_s
    capped = " (cut by --duration-s)" if result["capped"] else ""
    return Row(
        section="HTTP",
        name=name,
        n_calls=result["received"],
        records_per_call=records_per_request,
        p50_ms=result["p50_us"] / 1000,
        p95_ms=result["p95_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        requests_per_s=rps,
        records_per_s=rps * records_per_request,
        errors=errors,
        note=f"{result['sent']} sent, {result['received']} answered in {window_s:.2f} s{capped}",
    )


async def _httpx_load(spec: dict[str, Any]) -> dict[str, Any]:
    """``concurrency`` workers sharing one AsyncClient until ``requests`` have been sent."""
    bodies = [b.encode() for b in spec["bodies"]]
    headers = {"Authorization": f"Bearer {spec['token']}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=spec["concurrency"])
    timings: list[float] = []
    sent = non_200 = transport_errors = 0
    deadline = time.monotonic() + spec["cap_s"]
    async with httpx.AsyncClient(
        base_url=spec["url"], headers=headers, limits=limits, timeout=30
    ) as client:

        async def worker() -> None:
            nonlocal sent, non_200, transport_errors
            while sent < spec["requests"] and time.monotonic() < deadline:
                content = bodies[sent % len(bodies)]
                sent += 1
                start = time.perf_counter_ns()
                try:
                    response = await client.post(PREDICT_PATH, content=content)
                except httpx.TransportError:
                    transport_errors += 1
                    continue
                timings.append((time.perf_counter_ns() - start) / 1e6)
                non_200 += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
        duration_s = time.perf_counter() - started
    return {
        "sent": sent,
        "received": len(timings),
        "non_200": non_200,
        "transport_errors": transport_errors,
        "duration_s": duration_s,
        "p50_ms": statistics.median(timings) if timings else math.nan,
        "p95_ms": percentile(timings, 95),
        "p99_ms": percentile(timings, 99),
    }


def run_httpx_load(spec_path: Path, spec: dict[str, Any], core: int | None) -> dict[str, Any]:
    spec_path.write_text(json.dumps(spec))
    command = pinned([sys.executable, __file__, "--loadgen-worker", str(spec_path)], core)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate(timeout=spec["cap_s"] + 120)
    if process.returncode != 0:
        raise RuntimeError(f"the httpx load generator failed: {stderr[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def httpx_load_row(name: str, result: dict[str, Any]) -> Row:
    rps = result["received"] / result["duration_s"]
    return Row(
        section="HTTP",
        name=name,
        n_calls=result["received"],
        records_per_call=1,
        p50_ms=result["p50_ms"],
        p95_ms=result["p95_ms"],
        p99_ms=result["p99_ms"],
        requests_per_s=rps,
        records_per_s=rps,
        errors=result["non_200"] + result["transport_errors"],
        note=f"{result['sent']} sent in {result['duration_s']:.2f} s (httpx client-bound?)",
    )


@contextmanager
def profiling(pid: int | None, out: Path | None) -> Iterator[None]:
    """py-spy recording the server while the block runs (nothing when ``out`` is None).

    ``.txt``: collapsed stacks with thread names (grep- and sort-able); ``.json``:
    speedscope; anything else: an SVG flame graph."""
    if pid is None or out is None:
        yield
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    fmt = {".txt": "raw", ".json": "speedscope"}.get(out.suffix, "flamegraph")
    recorder = subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--rate", "250", "--threads", "--nonblocking",
         "--format", fmt, "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(1.0)  # attaching takes a moment
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes the profile on Ctrl-C
        try:
            recorder.wait(60)
        except subprocess.TimeoutExpired:
            recorder.kill()
        if recorder.returncode not in (0, -signal.SIGINT) or not out.exists():
            print(f"py-spy did not write {out}: {recorder.stderr.read()!r}", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# Audit check


def audit_check(home: Path, expected: int) -> dict[str, Any]:
    verify = json.loads(medserve_cli(home, "audit", "verify", "--json"))
    exported = [json.loads(line) for line in medserve_cli(home, "audit", "export").splitlines()]
    statuses = Counter(str(record["status"]) for record in exported)
    routes = Counter(record["route"] for record in exported)
    return {
        "requests_sent": expected,
        "records_exported": len(exported),
        "verify": verify,
        "statuses": dict(statuses),
        "routes": dict(routes),
        "one_record_per_request": verify["ok"]
        and len(exported) == expected
        and verify["checked"] == expected,
    }


# ---------------------------------------------------------------------------------------
# Report


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def print_report(bench: Bench) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    table = Table(
        title=f"medserve serving benchmark — {bench.family}, heart data",
        title_justify="left",
    )
    for column in ("where", "what", "records", "calls", "p50 ms", "p95 ms", "p99 ms",
                   "req/s", "records/s", "errors"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("where", "what") else "right")
    notes = []
    for row in bench.rows:
        mark = ""
        if row.note:
            notes.append(row.note)
            mark = f" [{len(notes)}]"
        table.add_row(
            row.section,
            row.name + mark,
            str(row.records_per_call),
            str(row.n_calls),
            fmt(row.p50_ms, 3),
            fmt(row.p95_ms, 3),
            fmt(row.p99_ms, 3),
            fmt(row.requests_per_s, 0),
            fmt(row.records_per_s, 0),
            str(row.errors),
        )
    console.print(table)
    load = bench.environment["load_average_at_start"]
    console.print(
        f"host: {bench.environment['cores']} cores, load average {load[0]:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at end (other work on the host skews every row)",
        soft_wrap=True,
        markup=False,
    )
    for number, note in enumerate(notes, start=1):
        console.print(f"[{number}] {note}", soft_wrap=True, markup=False)
    for line in bench.environment["notes"]:
        console.print(line, soft_wrap=True, markup=False)
    audit = bench.audit
    console.print(
        f"audit: {audit['requests_sent']} predict requests sent, {audit['records_exported']} "
        f"records exported, verify ok={audit['verify']['ok']} checked={audit['verify']['checked']}"
        f", statuses {audit['statuses']} → "
        + ("one record per request" if audit["one_record_per_request"] else "MISMATCH"),
        soft_wrap=True,
        markup=False,
    )
    target = bench.target
    console.print(
        f"target: p50 {target['p50_ms']:.3f} ms (httpx, single record) vs < {TARGET_P50_MS} ms "
        f"→ {'MET' if target['p50_met'] else 'MISSED'}; "
        f"{target['requests_per_s']:.0f} req/s at c={bench.settings['concurrency']} vs ≥ "
        f"{TARGET_RPS:.0f} → {'MET' if target['rps_met'] else 'MISSED'} "
        f"({MLFLOW_REFERENCE})",
        soft_wrap=True,
        markup=False,
    )


def save(bench: Bench, path: Path) -> None:
    """Adds (or replaces) this family's entry in the results file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    results = {}
    if path.exists():
        try:
            results = json.loads(path.read_text())
        except json.JSONDecodeError:
            results = {}
    results[bench.family] = asdict(bench)
    path.write_text(json.dumps(results, indent=2) + "\n")


def environment(pinning: bool, load_generator: str) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    notes = [
        (
            f"server pinned to core {SERVER_CORE} with taskset; load generator and this "
            f"process on core {CLIENT_CORE}"
            if pinning
            else "no CPU pinning (taskset missing or one core): client and server share cores"
        ),
        f"throughput load generator: {load_generator}; one uvicorn worker (uvloop, httptools), "
        "API key + validation + audit on, rate limit off, loopback",
    ]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "medserve": medserve.__version__,
        "commit": commit,
        "pinning": pinning,
        "load_generator": load_generator,
        "notes": notes,
        "load_average_at_start": os.getloadavg(),
    }


# ---------------------------------------------------------------------------------------
# Main


def run(args: argparse.Namespace) -> Bench:
    home = Path(tempfile.mkdtemp(prefix="medserve-bench-")) / "home"
    home.mkdir()
    try:
        return run_in(home, args)
    finally:
        if args.keep_home:
            print(f"kept MEDSERVE_HOME={home}", file=sys.stderr)
        else:
            shutil.rmtree(home.parent, ignore_errors=True)


def run_in(home: Path, args: argparse.Namespace) -> Bench:
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    log(f"training {args.family} on {DATA_PATH.name} (MEDSERVE_HOME={home}) …")
    medserve_cli(
        home, "train", str(DATA_PATH), "--target", "num", "--positive-if", ">0",
        "--model", args.family, "--name", MODEL_NAME, "--json",
    )  # fmt: skip
    token = json.loads(medserve_cli(home, "keys", "create", "--role", "predictor", "--json"))["key"]

    pinning = pinning_available() and not args.no_pin
    server_core = SERVER_CORE if pinning else None
    client_core = CLIENT_CORE if pinning else None
    if pinning:
        os.sched_setaffinity(0, {CLIENT_CORE})

    wrk = None if args.load_generator == "httpx" else ensure_wrk()
    if args.load_generator == "wrk" and wrk is None:
        raise SystemExit("--load-generator wrk: wrk is not installed and could not be")
    load_generator = (
        f"wrk ({wrk}), one thread per connection" if wrk else "httpx.AsyncClient in a subprocess"
    )

    bench = Bench(
        family=args.family,
        settings={k: v for k, v in vars(args).items() if k != "loadgen_worker"},
        environment=environment(pinning, load_generator),
    )

    records = heart_records()
    from medserve.config import Settings
    from medserve.scoring.validation import validate_records
    from medserve.storage import Registry

    with Registry(Settings(home=home)) as registry:
        schema = registry.load(registry.get(MODEL_NAME)).schema
    valid = [record for record in records if not validate_records(schema, [record])]
    if len(valid) < len(records):
        log(f"{len(records) - len(valid)} of {len(records)} heart rows fail validation; left out")
    records = valid

    log("in-process floors …")
    bench.rows.extend(in_process_rows(home, records, token))

    single_bodies = [body([record]) for record in records]
    batch_body = body(batch_of(records, BATCH_RECORDS))
    sent = Sent()
    scratch = home / "bench"
    scratch.mkdir()
    with running_server(home, server_core) as server:
        log(f"server up at {server.url} (pid {server.process.pid}) …")
        check = httpx.post(
            server.url + PREDICT_PATH,
            content=single_bodies[0],
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        sent.count += 1
        if check.status_code != 200:
            raise RuntimeError(f"sanity request failed: {check.status_code} {check.text}")

        log("sequential single-record requests …")
        bench.rows.append(
            sequential_row(
                server.url,
                token,
                single_bodies,
                args.sequential,
                args.warmup,
                args.duration_s,
                sent,
            )  # fmt: skip
        )

        profile_out = Path(args.profile_out) if args.profile_out else None
        if wrk:
            log("wrk, 1 connection …")
            script = wrk_script(scratch / "single.lua", token, single_bodies, args.sequential, 1)
            result = run_wrk(wrk, script, server.url, 1, args.duration_s, client_core)
            sent.count += result["sent"]
            bench.rows.append(wrk_row("wrk, 1 connection (low client overhead)", result, 1))

            log(f"wrk, {args.concurrency} connections, {args.requests} requests …")
            script = wrk_script(
                scratch / "load.lua", token, single_bodies, args.requests, args.concurrency
            )
            with profiling(server.process.pid, profile_out):
                result = run_wrk(
                    wrk, script, server.url, args.concurrency, args.duration_s, client_core
                )
            sent.count += result["sent"]
            throughput = wrk_row(f"wrk, {args.concurrency} connections", result, 1)
        else:
            log(f"httpx.AsyncClient, concurrency {args.concurrency}, {args.requests} requests …")
            spec = {
                "url": server.url,
                "token": token,
                "bodies": [b.decode() for b in single_bodies],
                "requests": args.requests,
                "concurrency": args.concurrency,
                "cap_s": args.duration_s,
            }
            with profiling(server.process.pid, profile_out):
                result = run_httpx_load(scratch / "load.json", spec, client_core)
            sent.count += result["sent"]
            throughput = httpx_load_row(
                f"httpx.AsyncClient, concurrency {args.concurrency}", result
            )
        bench.rows.append(throughput)

        log(f"{BATCH_RECORDS}-record batch requests …")
        bench.rows.append(
            sequential_row(
                server.url, token, [batch_body], args.batch_requests, 3, args.duration_s, sent
            )
        )
        bench.rows[-1].name = f"httpx.Client, {BATCH_RECORDS}-record batch"
        bench.rows[-1].note = "after 3 warm-up requests, sequential"
    # SIGTERM has run the lifespan: the audit writer has written everything it was given.
    log("checking the audit trail …")
    bench.audit = audit_check(home, sent.count)
    single = next(row for row in bench.rows if row.name.startswith("httpx.Client keep-alive"))
    bench.target = {
        "p50_ms": single.p50_ms,
        "p50_met": single.p50_ms < TARGET_P50_MS,
        "requests_per_s": throughput.requests_per_s,
        "rps_met": (throughput.requests_per_s or 0) >= TARGET_RPS and throughput.errors == 0,
    }
    return bench


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=("lightgbm", "logistic"), default="lightgbm")
    parser.add_argument("--requests", type=int, default=3000, help="Requests at concurrency.")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sequential", type=int, default=2000, help="Timed sequential requests.")
    parser.add_argument("--warmup", type=int, default=200, help="Sequential warm-up requests.")
    parser.add_argument("--batch-requests", type=int, default=30, help="Timed batch requests.")
    parser.add_argument(
        "--duration-s", type=float, default=60.0, help="Cap on each HTTP phase, in seconds."
    )
    parser.add_argument(
        "--load-generator", choices=("auto", "wrk", "httpx"), default="auto",
        help="auto: wrk when installed (one `apt-get install` try), else httpx.",
    )  # fmt: skip
    parser.add_argument("--no-pin", action="store_true", help="Do not pin with taskset.")
    parser.add_argument("--keep-home", action="store_true", help="Keep the MEDSERVE_HOME.")
    parser.add_argument(
        "--profile-out",
        help="py-spy record the server during the concurrency phase (.txt collapsed "
        "stacks, .json speedscope, else an SVG flame graph); needs py-spy (not a "
        "dependency: pip install it into the venv yourself).",
    )
    parser.add_argument(
        "--results", default=str(RESULTS_PATH), help="JSON results file (one entry per family)."
    )
    parser.add_argument("--loadgen-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("requests", "concurrency", "sequential", "batch_requests"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.requests < args.concurrency:
        parser.error("--requests must be at least --concurrency")
    if args.warmup < 0 or args.duration_s <= 0:
        parser.error("--warmup must be ≥ 0 and --duration-s > 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.loadgen_worker:
        spec = json.loads(Path(args.loadgen_worker).read_text())
        print(json.dumps(asyncio.run(_httpx_load(spec))))
        return
    bench = run(args)
    print_report(bench)
    save(bench, Path(args.results))
    print(f"wrote {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Prediction-log benchmark: what logging every answer (issue 13) costs a predict request,
what a shadow version costs, whether the background thread keeps up, and how many bytes
the log takes per prediction on SQLite and PostgreSQL.

Trains `heart` twice through the CLI in a temporary MEDSERVE_HOME (version 1 is served,
version 2 is a candidate), creates a predictor key, copies the home twice and builds two
apps with `create_app` in this process, one with `prediction_log` on and one with it off
(each on its own copy, so the log's writes never take the other's SQLite lock). Requests
go through `httpx.ASGITransport` (the full app: API key, validation, audit, log; no
socket), alternating one request to each app, so load on the host hits both alike:

1. POST /v1/models/heart/predict with 1 and 32 records, log on vs off: p50/p90/p99 and
   requests/s, sequential, sequential with 20 ms idle after each request (the log's
   thread done before the next one starts: what is left is the response path's own
   cost) and at concurrency 16 (the log's thread shares the GIL, the cores and the
   SQLite write lock with the requests);
2. the same with version 2 set as heart's shadow on the log-on app, the shadow's own
   scoring time per answer (the app's medserve_shadow_scoring_seconds histogram) and the
   log thread's CPU per answer; then `recorder.flush()` and a count of the rows logged
   (served and shadow) against the predictions answered, with `recorder.dropped`/`lost`;
3. bytes per prediction: the SQLite file's growth (after `PRAGMA wal_checkpoint(TRUNCATE)`)
   over 20,000 predictions logged through the app, and the growth of
   pg_total_relation_size('predictions') for the same rows written to PostgreSQL (in a
   schema of its own, dropped at the end; skipped when the server does not answer).

    nice .venv/bin/python bench/monitoring.py                  # about 2 minutes on 2 cores
    nice .venv/bin/python bench/monitoring.py --requests 1000 --growth 50000
    nice .venv/bin/python bench/monitoring.py --postgres none  # SQLite only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from fastapi import FastAPI
from sqlalchemy import create_engine, func, select, text

import medserve
from medserve.config import Settings
from medserve.http.app import create_app
from medserve.monitoring.recorder import PredictionRecorder
from medserve.storage.predictions import LoggedPrediction, PredictionLog
from medserve.storage.registry import Registry
from medserve.storage.shadows import ShadowStore
from medserve.storage.tables import PredictionRow

DATA_PATH = Path(medserve.__file__).parent / "datasets" / "heart_disease_uci.csv"
MODEL_NAME = "heart"
PREDICT_PATH = f"/v1/models/{MODEL_NAME}/predict"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SIZES = (1, 32)
WARMUP = 30
CONCURRENCY = 16
PAUSE_S = 0.02
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------
# Records and timing


def heart_records() -> list[dict[str, Any]]:
    """The heart table's rows as a JSON client sends them (numbers, null, booleans)."""
    frame = pd.read_csv(DATA_PATH, dtype=str, keep_default_na=False, na_values=[""])
    records = []
    for row in frame.drop(columns=["id", "num"]).to_dict(orient="records"):
        record: dict[str, Any] = {}
        for column, value in row.items():
            if pd.isna(value):
                record[column] = None
            else:
                try:
                    record[column] = float(value) if "." in value else int(value)
                except ValueError:
                    record[column] = {"TRUE": True, "FALSE": False}.get(value, value)
        records.append(record)
    return records


def bodies(records: Sequence[dict[str, Any]], size: int, n: int) -> list[bytes]:
    """``n`` request bodies of ``size`` records each, walking through the table."""
    out = []
    for i in range(n):
        chunk = [records[(i * size + j) % len(records)] for j in range(size)]
        out.append(json.dumps({"records": chunk}, separators=(",", ":")).encode())
    return out


def quantile(values_ms: Sequence[float], q: float) -> float:
    return statistics.quantiles(values_ms, n=100, method="inclusive")[round(q * 100) - 1]


@dataclass
class Timed:
    label: str
    size: int
    times_ms: list[float]
    wall_s: float  # summed request time (sequential) or the burst's wall time

    @property
    def p50(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def rps(self) -> float:
        return len(self.times_ms) / self.wall_s


# ---------------------------------------------------------------------------------------
# The apps


@dataclass
class App:
    label: str
    app: FastAPI
    client: httpx.AsyncClient
    monitor_thread: threading.Thread | None
    sent: int = 0  # predictions answered (records), warm-up included

    @property
    def recorder(self) -> PredictionRecorder | None:
        return self.app.state.scoring.recorder

    def monitor_cpu_s(self) -> float:
        """CPU seconds the log's background thread has used (Linux /proc)."""
        if self.monitor_thread is None or self.monitor_thread.native_id is None:
            return 0.0
        stat = Path(f"/proc/self/task/{self.monitor_thread.native_id}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS_PER_S

    def shadow_histogram(self) -> tuple[float, float]:
        """(count, sum of seconds) of medserve_shadow_scoring_seconds for heart."""
        registry = self.app.state.metrics.registry
        labels = {"model": MODEL_NAME}
        count = registry.get_sample_value("medserve_shadow_scoring_seconds_count", labels)
        total = registry.get_sample_value("medserve_shadow_scoring_seconds_sum", labels)
        return count or 0.0, total or 0.0

    async def post(self, body: bytes, size: int) -> float:
        start = time.perf_counter()
        answer = await self.client.post(PREDICT_PATH, content=body)
        elapsed = (time.perf_counter() - start) * 1000
        if answer.status_code != 200:
            raise SystemExit(f"{self.label}: {answer.status_code} {answer.text[:300]}")
        self.sent += size
        return elapsed


@asynccontextmanager
async def running_app(label: str, settings: Settings, token: str) -> AsyncIterator[App]:
    """``create_app(settings)`` with its lifespan (so shutdown drains the log) and an
    in-process client; the log's thread is found as the one create_app started."""
    before = set(threading.enumerate())
    app = create_app(settings)
    started = [t for t in threading.enumerate() if t not in before]
    monitor = next((t for t in started if t.name == "medserve-monitor"), None)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers, timeout=60
        ) as client:
            yield App(label, app, client, monitor)


async def alternating(
    apps: Sequence[App], size: int, n: int, records: list, pause_s: float = 0.0
) -> list[Timed]:
    """``n`` sequential requests to each app, one to each in turn (the first app of each
    pair alternates), after a warm-up; ``pause_s`` untimed after each request, so the
    log's thread is done with it before the next one starts."""
    warm = bodies(records, size, WARMUP)
    for body in warm:
        for app in apps:
            await app.post(body, size)
    timed = [Timed(app.label, size, [], 0.0) for app in apps]
    for i, body in enumerate(bodies(records, size, n)):
        order = range(len(apps)) if i % 2 == 0 else reversed(range(len(apps)))
        for k in order:
            timed[k].times_ms.append(await apps[k].post(body, size))
            if pause_s:
                await asyncio.sleep(pause_s)
    for t in timed:
        t.wall_s = sum(t.times_ms) / 1000
    return timed


async def burst(app: App, size: int, n: int, records: list) -> Timed:
    """``n`` requests from ``CONCURRENCY`` concurrent callers; wall time to the last
    answer (the log may still be writing: see the flush row)."""
    work = bodies(records, size, n)
    times: list[float] = []

    async def caller(k: int) -> None:
        for body in work[k::CONCURRENCY]:
            times.append(await app.post(body, size))

    start = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(CONCURRENCY)))
    return Timed(app.label, size, times, time.perf_counter() - start)


async def bursts(apps: Sequence[App], size: int, n: int, rounds: int, records: list) -> list:
    """Alternating bursts, ``rounds`` per app, pooled; the flush after each burst of an
    app with the log is timed apart."""
    pooled = [Timed(app.label, size, [], 0.0) for app in apps]
    flush_s = [0.0 for _ in apps]
    for r in range(rounds):
        order = list(range(len(apps))) if r % 2 == 0 else list(reversed(range(len(apps))))
        for k in order:
            one = await burst(apps[k], size, n // rounds, records)
            pooled[k].times_ms += one.times_ms
            pooled[k].wall_s += one.wall_s
            if apps[k].recorder is not None:
                start = time.perf_counter()
                apps[k].recorder.flush(60)
                flush_s[k] += time.perf_counter() - start
    return list(zip(pooled, flush_s, strict=True))


# ---------------------------------------------------------------------------------------
# Tables


def latency_table(title: str, rows: list[Timed], base: dict[int, float]) -> list[str]:
    lines = [
        title,
        "",
        "| app | records | requests | p50 ms | p90 ms | p99 ms | req/s | p50 vs log off |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in rows:
        delta = t.p50 - base[t.size]
        lines.append(
            f"| {t.label} | {t.size} | {len(t.times_ms)} | {t.p50:.2f} | "
            f"{quantile(t.times_ms, 0.9):.2f} | {quantile(t.times_ms, 0.99):.2f} | "
            f"{t.rps:.0f} | {delta:+.2f} ms ({delta / base[t.size]:+.0%}) |"
        )
    return lines


def burst_table(title: str, rows: list[tuple[Timed, float]]) -> list[str]:
    lines = [
        title,
        "",
        "| app | records | requests | p50 ms | p99 ms | req/s (answers) | "
        "flush after, s | req/s (answers + log flushed) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t, flush in rows:
        lines.append(
            f"| {t.label} | {t.size} | {len(t.times_ms)} | {t.p50:.2f} | "
            f"{quantile(t.times_ms, 0.99):.2f} | {t.rps:.0f} | {flush:.3f} | "
            f"{len(t.times_ms) / (t.wall_s + flush):.0f} |"
        )
    return lines


# ---------------------------------------------------------------------------------------
# Rows and bytes


def logged_rows(engine: Any) -> tuple[int, int]:
    """(served rows, shadow rows) in the prediction log."""
    with engine.connect() as connection:
        found = dict(
            connection.execute(
                select(PredictionRow.shadow, func.count()).group_by(PredictionRow.shadow)
            ).all()
        )
    return found.get(False, 0), found.get(True, 0)


def sqlite_bytes(engine: Any, path: Path) -> int:
    """The database's size on disk once the WAL is folded into it."""
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def read_rows(engine: Any, limit: int) -> list[LoggedPrediction]:
    """The newest served rows of the log, to write the same rows to PostgreSQL."""
    columns = [c for c in PredictionRow.__table__.columns if c.name != "id"]
    statement = (
        select(*columns)
        .where(PredictionRow.shadow.is_(False))
        .order_by(PredictionRow.id.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        return [LoggedPrediction(**row._mapping) for row in connection.execute(statement)]


def postgres_growth(url: str, rows: list[LoggedPrediction], home: Path) -> dict[str, Any]:
    """Bytes per row of the predictions table and its indexes on PostgreSQL: the rows are
    written as the log's thread writes them (500 per transaction) into a schema of this
    run's own, migrated from scratch and dropped afterwards."""
    schema = f"bench_monitoring_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except Exception as error:  # no server, or no rights: report and go on
        admin.dispose()
        return {"skipped": f"{type(error).__name__}: {str(error).splitlines()[0]}"}
    scoped = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    settings = Settings(home=home, database_url=scoped)
    size_sql = text(
        "SELECT pg_total_relation_size('predictions'), pg_relation_size('predictions'), "
        "pg_indexes_size('predictions')"
    )
    try:
        with Registry(settings) as registry:
            engine = registry.engine
            log = PredictionLog(engine)
            with engine.connect() as connection:
                before = connection.execute(size_sql).one()
            start = time.perf_counter()
            for i in range(0, len(rows), 500):
                log.write(rows[i : i + 500])
            write_s = time.perf_counter() - start
            with engine.connect() as connection:
                after = connection.execute(size_sql).one()
                version = connection.exec_driver_sql("SHOW server_version").scalar()
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
    return {
        "rows": len(rows),
        "total": after[0] - before[0],
        "heap": after[1] - before[1],
        "indexes": after[2] - before[2],
        "write_s": write_s,
        "version": version,
    }


# ---------------------------------------------------------------------------------------
# Main


def medserve_cli(home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSERVE_")}
    env["MEDSERVE_HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, "-m", "medserve", *args], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"`medserve {' '.join(args)}` failed: {result.stderr[-2000:]}")
    return result.stdout


def prepare(work: Path, family: str) -> str:
    """Train heart twice (version 2 stays a candidate) and make a predictor key."""
    base = work / "base"
    for seed in ("0", "1"):
        medserve_cli(
            base, "train", str(DATA_PATH), "--target", "num", "--positive-if", ">0",
            "--model", family, "--name", MODEL_NAME, "--cv", "3", "--seed", seed, "--json",
        )  # fmt: skip
    with Registry(Settings(home=base)) as registry:
        stages = {v.version: v.stage for v in registry.versions(MODEL_NAME)}
    if stages.get(1) != "production" or stages.get(2) in (None, "production", "archived"):
        raise SystemExit(f"expected heart:1 production and heart:2 a candidate, got {stages}")
    token = json.loads(medserve_cli(base, "keys", "create", "--role", "predictor", "--json"))
    for copy in ("log-on", "log-off"):
        shutil.copytree(base, work / copy)
    return token["key"]


async def measure(args: argparse.Namespace, work: Path, token: str) -> list[str]:
    records = heart_records()
    out: list[str] = []
    common = {"rate_limit_per_minute": 0}
    on_settings = Settings(home=work / "log-on", prediction_log=True, **common)
    off_settings = Settings(home=work / "log-off", prediction_log=False, **common)
    async with AsyncExitStack() as stack:
        on = await stack.enter_async_context(running_app("log on", on_settings, token))
        off = await stack.enter_async_context(running_app("log off", off_settings, token))
        assert on.recorder is not None and off.recorder is None
        engine = on.app.state.registry.engine

        # 1. the log and the window counts, no shadow
        seq: list[Timed] = []
        cpu: dict[int, tuple[float, int]] = {}
        for size in SIZES:
            cpu_before, sent_before = on.monitor_cpu_s(), on.sent
            seq += await alternating([on, off], size, args.requests, records)
            on.recorder.flush(60)
            cpu[size] = (on.monitor_cpu_s() - cpu_before, (on.sent - sent_before) // size)
        base = {t.size: t.p50 for t in seq if t.label == "log off"}
        out += latency_table(
            f"1. Sequential, one request to each app in turn ({args.requests} per app and size)",
            seq,
            base,
        )
        out += ["", "Log thread CPU per answer (logging + window counts, no shadow): "]
        out[-1] += ", ".join(
            f"{size} record{'s' * (size > 1)}: {1000 * s / n:.3f} ms"
            for size, (s, n) in cpu.items()
        )
        paced: list[Timed] = []
        for size in SIZES:
            paced += await alternating([on, off], size, args.paced, records, PAUSE_S)
        base = {t.size: t.p50 for t in paced if t.label == "log off"}
        title = (
            f"1a. Paced: {PAUSE_S * 1000:.0f} ms idle after each request, so the log's thread "
            f"has finished before the next request ({args.paced} per app and size; req/s "
            "counts only the time in requests)"
        )
        out += ["", *latency_table(title, paced, base)]
        conc = []
        for size in SIZES:
            conc += await bursts([on, off], size, args.burst, 4, records)
        out += ["", *burst_table(f"1b. Concurrency {CONCURRENCY}, alternating bursts", conc)]
        served_rows, _ = logged_rows(engine)
        out += ["", f"Rows after part 1: {served_rows} logged, {on.sent} predictions answered."]

        # 2. version 2 as heart's shadow, on the log-on app
        ShadowStore(engine).set(MODEL_NAME, 2, "bench")
        time.sleep(2.5)  # ShadowVersions re-reads the shadow every 2 s
        on.label = "log on + shadow"
        shadow_rows_before = logged_rows(engine)
        sent_before = on.sent
        shadowed: list[Timed] = []
        shadow_cost: dict[int, tuple[float, float, float]] = {}
        for size in SIZES:
            count0, sum0 = on.shadow_histogram()
            cpu_before, answered_before = on.monitor_cpu_s(), on.sent
            shadowed += await alternating([on, off], size, args.requests, records)
            on.recorder.flush(60)
            count1, sum1 = on.shadow_histogram()
            answers = (on.sent - answered_before) // size
            shadow_cost[size] = (
                1000 * (sum1 - sum0) / max(count1 - count0, 1),
                count1 - count0,
                1000 * (on.monitor_cpu_s() - cpu_before) / answers,
            )
        base = {t.size: t.p50 for t in shadowed if t.label == "log off"}
        out += [
            "",
            *latency_table(
                f"2. Sequential with heart:2 as shadow ({args.requests} per app and size)",
                shadowed,
                base,
            ),
            "",
            "| records | shadow scoring per answer, mean ms | answers scored | "
            "log thread CPU per answer, ms |",
            "|---:|---:|---:|---:|",
        ]
        for t in shadowed:
            if t.label != "log on + shadow":
                continue
            mean_ms, scored, thread_ms = shadow_cost[t.size]
            out.append(f"| {t.size} | {mean_ms:.3f} | {scored:.0f} | {thread_ms:.3f} |")
        on.recorder.flush(60)
        served_rows, shadow_rows = logged_rows(engine)
        shadowed_predictions = on.sent - sent_before
        new_shadow = shadow_rows - shadow_rows_before[1]
        out += [
            "",
            f"Kept up: {served_rows} served rows for {on.sent} predictions answered "
            f"({'equal' if served_rows == on.sent else 'NOT EQUAL'}); {new_shadow} shadow rows "
            f"for {shadowed_predictions} predictions answered with the shadow set "
            f"({'equal' if new_shadow == shadowed_predictions else 'NOT EQUAL'}); "
            f"dropped {on.recorder.dropped}, lost {on.recorder.lost}.",
        ]

        # 3. bytes per prediction: no shadow, 32-record requests through the app
        ShadowStore(engine).clear(MODEL_NAME)
        time.sleep(2.5)
        on.label = "log on"
        db_path = work / "log-on" / "medserve.db"
        db_path = db_path if db_path.exists() else next((work / "log-on").rglob("*.db"))
        rows0 = logged_rows(engine)[0]
        size0 = sqlite_bytes(engine, db_path)
        n_requests = args.growth // 32
        for body in bodies(records, 32, n_requests):
            await on.post(body, 32)
        on.recorder.flush(120)
        grown = logged_rows(engine)[0] - rows0
        size1 = sqlite_bytes(engine, db_path)
        audit_note = "the file also holds these requests' audit records"
        with engine.connect() as connection:
            audit_rows = connection.exec_driver_sql("SELECT count(*) FROM audit_log").scalar()
        sample = read_rows(engine, grown)
    pg = (
        {"skipped": "--postgres none"}
        if args.postgres == "none"
        else postgres_growth(args.postgres, sample, work / "pg-home")
    )
    out += [
        "",
        f"3. Growth of the log ({grown} predictions, {n_requests} requests of 32 records)",
        "",
        "| database | rows | bytes grown | bytes per prediction | note |",
        "|---|---:|---:|---:|---|",
        f"| SQLite (file + WAL after wal_checkpoint(TRUNCATE)) | {grown} | {size1 - size0:,} | "
        f"{(size1 - size0) / grown:.0f} | {audit_note} ({n_requests} of {audit_rows}) |",
    ]
    if "skipped" in pg:
        out.append(f"| PostgreSQL | – | – | – | skipped: {pg['skipped']} |")
    else:
        out.append(
            f"| PostgreSQL {pg['version']} (pg_total_relation_size) | {pg['rows']} | "
            f"{pg['total']:,} | {pg['total'] / pg['rows']:.0f} | heap "
            f"{pg['heap'] / pg['rows']:.0f} + indexes {pg['indexes'] / pg['rows']:.0f} B/row "
            "(the rest: free-space and visibility maps); "
            f"written in {pg['write_s']:.1f} s, 500 rows a transaction |"
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="lightgbm")
    parser.add_argument("--requests", type=int, default=250, help="per app, size and part")
    parser.add_argument("--paced", type=int, default=150, help="paced requests per app, size")
    parser.add_argument("--burst", type=int, default=400, help="requests per app at c=16")
    parser.add_argument("--growth", type=int, default=20_000, help="predictions for part 3")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="SQLAlchemy URL or none")
    args = parser.parse_args()
    # Drift alerts on the cycled table (one site at a time) are expected here; keep errors.
    logging.getLogger("medserve").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="medserve-monitoring-bench-"))
    try:
        started = time.perf_counter()
        load0 = os.getloadavg()[0]
        print(f"training {args.family} twice in {work} …", file=sys.stderr, flush=True)
        token = prepare(work, args.family)
        lines = asyncio.run(measure(args, work, token))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"Prediction log, heart {args.family}, in-process ASGI (httpx.ASGITransport), "
        f"{os.cpu_count()} CPUs, load average {load0:.2f} at start and "
        f"{os.getloadavg()[0]:.2f} at end, {time.perf_counter() - started:.0f} s"
    )
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

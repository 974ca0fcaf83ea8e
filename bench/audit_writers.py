"""Audit records per second with 1, 2 and 4 writer processes extending one chain.

Replicas sharing one PostgreSQL database append to a single hash chain: each append
takes the ``audit`` advisory lock, reads the head, writes its records and the new head,
and commits, so writers queue for the lock. This measures what that leaves, per
database, for each way of writing:

- ``writer``: an AuditWriter per process, as the service uses it, fed by 8 request-like
  threads that each submit one record and await its commit (what queued while a batch
  committed is the next batch: group commit);
- ``burst``: an AuditWriter per process given all its records at once (the batching
  ceiling: batches of up to 500);
- ``append``: ``AuditLog.append`` per record, one record per transaction (the worst case).

Each writer is its own process (multiprocessing, spawn), with its own engine; all open
their connection first and start together. ``seconds`` runs from the start to the last
writer's last commit (process start-up and exit are not counted). After each row the
chain is verified (``AuditLog.verify``) and its record count checked against everything
appended so far.

PostgreSQL: a throwaway database on ``--postgres`` (the admin URL, trust auth), created
and dropped here. SQLite (a file in a temporary directory, WAL, the same processes) is
the single-machine floor: the embedded default, where writers take the file's write lock.

    nice .venv/bin/python bench/audit_writers.py
    nice .venv/bin/python bench/audit_writers.py --records 2000 --writers 1 2 4 8
    nice .venv/bin/python bench/audit_writers.py --postgres none   # SQLite only
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from medserve.config import Settings
from medserve.security.audit import AuditEntry, AuditLog, AuditWriter
from medserve.storage import Registry
from medserve.storage.database import open_engine

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MODES = ("writer", "burst", "append")
REQUEST_THREADS = 8


@dataclass(frozen=True)
class Row:
    database: str
    mode: str
    writers: int
    records: int
    seconds: float
    verified: bool

    def line(self) -> str:
        rate = self.records / self.seconds
        verified = "yes" if self.verified else "NO"
        return (
            f"| {self.database} | {self.mode} | {self.writers} | {self.records:,} | "
            f"{self.seconds:.2f} | {rate:,.0f} | {verified} |"
        )


def entries(name: str, count: int) -> list[AuditEntry]:
    return [
        AuditEntry(
            route="/v1/models/heart/predict",
            method="POST",
            status=200,
            request_id=f"{name}-{n}",
            key_id=name,
            role="predictor",
            model="heart",
            model_version=1,
            n_records=1,
            client="127.0.0.1",
        )
        for n in range(count)
    ]


def write(log: AuditLog, mode: str, batch: list[AuditEntry]) -> None:
    """Append ``batch`` the way ``mode`` names; raises if any record is lost."""
    if mode == "append":
        for entry in batch:
            log.append(entry)
        return
    with AuditWriter(log) as writer:
        if mode == "burst":
            for future in [writer.submit(entry) for entry in batch]:
                future.result()
            return

        def request(share: list[AuditEntry]) -> None:
            for entry in share:
                writer.submit(entry).result()

        threads = [
            threading.Thread(target=request, args=(batch[t::REQUEST_THREADS],))
            for t in range(REQUEST_THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        writer.flush()


def writer_process(
    url: str, key: bytes, mode: str, name: str, count: int, ready, go, finished
) -> None:
    """One writer: its own engine, connected before the start, then its records; puts the
    moment its last record committed (``time.monotonic``: one clock for all processes)."""
    engine = open_engine(url)
    with engine.connect():
        pass  # the pool holds a connection before the clock starts
    batch = entries(name, count)
    ready.release()
    go.wait()
    write(AuditLog(engine, key), mode, batch)
    finished.put(time.monotonic())
    engine.dispose()


def run(url: str, key: bytes, mode: str, writers: int, per_writer: int, offset: int) -> float:
    """Seconds from the start to the last writer's last commit."""
    context = multiprocessing.get_context("spawn")
    ready, go, finished = context.Semaphore(0), context.Event(), context.Queue()
    processes = [
        context.Process(
            target=writer_process,
            args=(url, key, mode, f"w{offset + index}", per_writer, ready, go, finished),
        )
        for index in range(writers)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire()
    started = time.monotonic()
    go.set()
    for process in processes:
        process.join()
    failed = [process.exitcode for process in processes if process.exitcode != 0]
    if failed:
        raise SystemExit(f"{len(failed)} writer processes failed (exit codes {failed})")
    return max(finished.get() for _ in processes) - started


def measure(database: str, url: str, home: Path, args: argparse.Namespace) -> list[Row]:
    key = secrets.token_bytes(32)
    rows: list[Row] = []
    appended = 0
    with Registry(Settings(home=home, database_url=url)) as registry:  # migrates the schema
        log = AuditLog(registry.engine, key)
        for mode in MODES:
            for writers in args.writers:
                seconds = run(url, key, mode, writers, args.records, offset=appended)
                total = writers * args.records
                appended += total
                result = log.verify()
                verified = result.ok and result.checked == appended
                rows.append(Row(database, mode, writers, total, seconds, verified))
                print(rows[-1].line(), file=sys.stderr, flush=True)
    return rows


class ThrowawayDatabase:
    """A database of its own on the PostgreSQL server behind ``admin_url``, dropped after."""

    def __init__(self, admin_url: str) -> None:
        self.admin = make_url(admin_url)
        self.name = f"medserve_bench_{uuid.uuid4().hex[:8]}"

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(
            host=self.admin.host,
            port=self.admin.port or 5432,
            user=self.admin.username,
            dbname=self.admin.database,
            autocommit=True,
            connect_timeout=3,
        )

    def __enter__(self) -> str:
        with self._admin() as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')
        return self.admin.set(database=self.name).render_as_string(hide_password=False)

    def __exit__(self, *exc: object) -> None:
        with self._admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000, help="per writer process")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="admin URL, or none")
    args = parser.parse_args()
    started, load0 = time.perf_counter(), os.getloadavg()[0]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="medserve-audit-writers-") as work:
        rows += measure("SQLite", f"sqlite:///{work}/audit.db", Path(work) / "sqlite", args)
        if args.postgres != "none":
            with ThrowawayDatabase(args.postgres) as url:
                rows += measure("PostgreSQL", url, Path(work) / "postgres", args)
    print(
        f"Audit writers, {args.records:,} records per writer process, {os.cpu_count()} CPUs "
        f"(server included), load average {load0:.2f} at start and "
        f"{os.getloadavg()[0]:.2f} at end, {time.perf_counter() - started:.0f} s"
    )
    print()
    print("| database | mode | writers | records | seconds | records/s | chain verified |")
    print("|---|---|---:|---:|---:|---:|---|")
    for row in rows:
        print(row.line())
    floor = {(r.mode, r.writers): r for r in rows if r.database == "SQLite"}
    print()
    print("PostgreSQL against the SQLite floor (same mode, same writers):")
    for row in rows:
        if row.database == "PostgreSQL" and (row.mode, row.writers) in floor:
            base = floor[row.mode, row.writers]
            ratio = (row.records / row.seconds) / (base.records / base.seconds)
            print(f"- {row.mode}, {row.writers} writers: {ratio:.2f}x")
    return 0 if all(row.verified for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

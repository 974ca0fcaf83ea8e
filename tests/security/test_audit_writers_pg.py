"""Several processes extending one audit chain in one PostgreSQL database, as replicas do.

Each writer is a separate Python process with its own engine and connection pool; they
start together and append at once. The chain they leave must hold every record each of
them appended, once, in one gap-free sequence that verifies.

What this guards: ``AuditLog.append_many`` reads the head and writes seq + 1 under the
``audit`` advisory lock. Without the lock two writers read the same head and write the
same seq; the primary key on seq refuses the second (so the chain itself stays whole),
and that writer's record is lost: here an ``append`` fails (``n_failed``), and an
AuditWriter loses it once its retries run out (``lost``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import pairwise

import pytest

from medserve.config import Settings
from medserve.security.audit import AuditLog, VerifyResult
from medserve.storage import Registry

pytestmark = pytest.mark.postgres

WRITERS = 4
RECORDS_PER_WRITER = 300
AUDIT_KEY = b"a" * 32
# One writer process: builds its entries, says "ready", waits for the go (a line on stdin),
# appends, prints how it went. ``append``: one record per transaction (the most contention);
# ``writer``: an AuditWriter fed by request-like threads that each await their record.
WRITER = """
import json, sys, threading
from medserve.security.audit import AuditEntry, AuditLog, AuditWriter
from medserve.storage.database import open_engine

url, name, count, mode, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
log = AuditLog(open_engine(url), bytes.fromhex(key))
entries = [
    AuditEntry(route="/v1/models/heart/predict", method="POST", status=200,
               request_id=f"{name}-{n}", key_id=name, role="predictor", model="heart",
               model_version=1, n_records=1)
    for n in range(count)
]
failed = []
print("ready", flush=True)
sys.stdin.readline()
if mode == "append":
    for entry in entries:
        try:
            log.append(entry)
        except Exception as error:
            failed.append(type(error).__name__)
    lost = 0
else:
    with AuditWriter(log) as writer:
        def request(share):
            for entry in share:
                try:
                    writer.submit(entry).result(timeout=60)
                except Exception as error:
                    failed.append(type(error).__name__)
        threads = [threading.Thread(target=request, args=(entries[t::8],)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    lost = writer.lost
print(json.dumps({"n_failed": len(failed), "errors": sorted(set(failed)), "lost": lost}))
"""


def run_writers(url: str, mode: str) -> list[dict]:
    """Start WRITERS processes, let them all go at once, and return what each reported."""
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                url,
                f"w{index}",
                str(RECORDS_PER_WRITER),
                mode,
                AUDIT_KEY.hex(),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for index in range(WRITERS)
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        reports = []
        for process in processes:
            out, _ = process.communicate(timeout=300)
            assert process.returncode == 0
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


@pytest.mark.parametrize("mode", ["append", "writer"])
def test_writer_processes_sharing_postgresql_extend_one_chain_and_lose_nothing(
    tmp_path, postgres_url, mode
):
    with Registry(Settings(home=tmp_path / "home", database_url=postgres_url)) as registry:
        reports = run_writers(postgres_url, mode)
        log = AuditLog(registry.engine, AUDIT_KEY)
        records = list(log.export())

        assert reports == [{"n_failed": 0, "errors": [], "lost": 0}] * WRITERS
        total = WRITERS * RECORDS_PER_WRITER
        assert [record["seq"] for record in records] == list(range(1, total + 1))
        assert sorted(record["request_id"] for record in records) == sorted(
            f"w{index}-{n}" for index in range(WRITERS) for n in range(RECORDS_PER_WRITER)
        )
        assert log.verify() == VerifyResult(ok=True, checked=total)
        # They did write at once: the chain passes from one writer to another many times.
        switches = sum(a["key_id"] != b["key_id"] for a, b in pairwise(records))
        assert switches > 2 * WRITERS

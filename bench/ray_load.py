"""Load and fault benchmark for `medserve serve --engine ray` (issue 15): 64 concurrent
clients against two Ray Serve replicas on one PostgreSQL registry and one Redis, beside a
single uvicorn process (`medserve serve`) on the same registry as the peer, in one session.

Phases, each with its own API key so that the audit trail can be counted per phase:

1. steady: 64 clients for --seconds (60) against 2 replicas: errors, p50, p99, req/s;
   audit records for the phase's key against the requests answered; the chain verified;
2. peer: the same load against one uvicorn process;
3. kill: --fault-seconds (30) of load, a replica killed (ray.kill) a third of the way in:
   what the clients saw, audit records against answers, the chain, and how long Ray
   Serve took to bring the replica back;
4. postgres: --fault-seconds of load, PostgreSQL restarted (pg_ctlcluster … restart) a
   third of the way in: every status seen (503 problem+json expected while it is down,
   never a 500 from the app, never a hang: the client's timeout is 15 s), and how long
   after the restart the first answer came back. Skipped with --no-postgres-restart
   (it restarts the machine's server: other PostgreSQL users see it too).

Each request is POST /v1/models/heart/predict with one record of the bundled heart table,
as an EHR's single-patient call. Limits are off (0) so that no 429 is counted.

    nice .venv/bin/python bench/ray_load.py                      # about 4 minutes
    nice .venv/bin/python bench/ray_load.py --seconds 20 --fault-seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import psycopg

from medserve.config import Settings
from medserve.flows.train import TrainRequest, train_and_register
from medserve.security.api_keys import ApiKeyStore
from medserve.security.audit import AuditLog
from medserve.storage import Registry
from medserve.storage.keystore import KeyStore
from medserve.storage.upgrade import upgrade_database

ROOT = Path(__file__).resolve().parents[1]
HEART = ROOT / "src" / "medserve" / "datasets" / "heart_disease_uci.csv"
CLIENT_TIMEOUT_S = 15.0
REDIS_URL = "redis://127.0.0.1:6379/5"


@dataclass
class Run:
    """What the clients saw in one phase."""

    name: str
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # of 2xx answers, seconds
    first_ok_after: dict[str, float] = field(default_factory=dict)
    audited: int | None = None
    verified: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def answered(self) -> int:
        """Requests the app answered, whatever the status (not the proxy's own errors, not
        connections that failed)."""
        return sum(n for s, n in self.statuses.items() if isinstance(s, int) or "app" in s)

    def row(self) -> list[str]:
        ok = self.statuses.get(200, 0)
        errors = sum(self.statuses.values()) - ok
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1000 if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
        return [
            self.name,
            f"{self.seconds:.0f}",
            str(ok),
            str(errors),
            f"{p50:.1f}",
            f"{p99:.1f}",
            f"{ok / self.seconds:.0f}" if self.seconds else "-",
            "-" if self.audited is None else f"{self.audited}/{self.answered}",
            "-" if self.verified is None else ("OK" if self.verified else "BROKEN"),
        ]


def status_of(answer: httpx.Response) -> int | str:
    """The status, and for a 5xx who sent it: the app (problem+json) or Ray's proxy."""
    if answer.status_code < 500:
        return answer.status_code
    sender = "app" if answer.headers.get("content-type", "").startswith("application/") else "proxy"
    return f"{answer.status_code} from the {sender}"


async def load(
    url: str, token: str, record: dict, seconds: float, clients: int, run: Run, events=()
) -> None:
    """``clients`` concurrent loops of one request after another for ``seconds``; each
    ``(at_s, name, action)`` of ``events`` runs in a thread at its time, and the first
    200 after it is timed."""
    body = {"records": [record]}
    headers = {"Authorization": f"Bearer {token}"}
    start = time.perf_counter()
    stop_at = start + seconds
    fired: dict[str, float] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop_at:
            sent = time.perf_counter()
            try:
                answer = await client.post("/v1/models/heart/predict", json=body)
                status = status_of(answer)
            except httpx.TimeoutException:
                status = "timeout (hang)"
            except httpx.HTTPError:
                status = "connection failed"
            took = time.perf_counter() - sent
            run.statuses[status] += 1
            if status == 200:
                run.latencies.append(took)
                for name, at in fired.items():
                    if name not in run.first_ok_after and sent >= at:
                        run.first_ok_after[name] = time.perf_counter() - at
            else:
                await asyncio.sleep(0.05)  # a failing service is not hammered in a tight loop

    async def fire(at_s: float, name: str, action) -> None:
        await asyncio.sleep(at_s)
        fired[name] = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(None, action)

    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=CLIENT_TIMEOUT_S, limits=limits
    ) as client:
        await asyncio.gather(
            *(client_loop(client) for _ in range(clients)),
            *(fire(at_s, name, action) for at_s, name, action in events),
        )
    run.seconds = time.perf_counter() - start


class Setup:
    def __init__(self, workdir: Path) -> None:
        self.database = f"medserve_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(
            host="127.0.0.1", user="postgres", dbname="test", autocommit=True
        ) as c:
            c.execute(f'CREATE DATABASE "{self.database}"')
        self.settings = Settings(
            home=workdir / "home",
            database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.database}",
            shared_state_url=REDIS_URL,
            rate_limit_per_minute=0,
            unauthenticated_per_minute=0,
        )
        upgrade_database(self.settings.database_url)
        train_and_register(
            self.settings,
            TrainRequest(
                data=HEART, name="heart", target="num", positive_if=">0", family="logistic", cv=3
            ),
        )
        frame = pd.read_csv(HEART).drop(columns=["id", "num"])
        row = frame.iloc[0]
        self.record = {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
                       for k, v in row.items()}  # fmt: skip
        self.registry = Registry(self.settings)

    def key(self, name: str) -> tuple[str, str]:
        key, token = ApiKeyStore(self.registry.engine).create("predictor", name=name)
        return key.id, token

    def account(self, run: Run, key_id: str) -> None:
        log = AuditLog(self.registry.engine, KeyStore(self.settings).purpose_key("audit"))
        run.audited = sum(1 for r in log.export() if r["key_id"] == key_id)
        run.verified = log.verify().ok

    def close(self) -> None:
        self.registry.close()
        with psycopg.connect(
            host="127.0.0.1", user="postgres", dbname="test", autocommit=True
        ) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def replicas_running() -> int:
    from ray import serve

    from medserve.serve.ray_serve import APP_NAME, DEPLOYMENT_NAME

    app = serve.status().applications[APP_NAME]
    return app.deployments[DEPLOYMENT_NAME].replica_states.get("RUNNING", 0)


def kill_a_replica() -> None:
    import ray

    replica = next(
        a for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA")
    )  # fmt: skip
    ray.kill(ray.get_actor(replica["name"], namespace=replica["namespace"]), no_restart=True)


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
    )


def uvicorn_peer(setup: Setup, port: int) -> subprocess.Popen:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEDSERVE_")},
        "MEDSERVE_HOME": str(setup.settings.home),
        "MEDSERVE_DATABASE_URL": setup.settings.database_url or "",
        "MEDSERVE_RATE_LIMIT_PER_MINUTE": "0",
        "MEDSERVE_UNAUTHENTICATED_PER_MINUTE": "0",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "medserve", "serve", "--port", str(port), "--log-level", "error"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("the uvicorn peer did not start")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--fault-seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--no-postgres-restart", action="store_true")
    args = parser.parse_args()

    import ray
    import redis
    from ray import serve

    from medserve.serve.ray_serve import Scaling, run

    redis.Redis.from_url(REDIS_URL).flushdb()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        setup = Setup(Path(tmp))
        try:
            started = time.perf_counter()
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            port = free_port()
            run(setup.settings, "127.0.0.1", port, Scaling(args.replicas, args.replicas))
            print(f"Ray + {args.replicas} replicas ready in {time.perf_counter() - started:.1f} s")
            url = f"http://127.0.0.1:{port}"

            steady = Run(f"ray, {args.replicas} replicas")
            key_id, token = setup.key("steady")
            asyncio.run(load(url, token, setup.record, args.seconds, args.clients, steady))
            setup.account(steady, key_id)
            runs.append(steady)

            def under_fault(title: str, event: str, action) -> tuple[Run, str]:
                """A load of --fault-seconds with ``action`` a third of the way in."""
                faulted = Run(title)
                key_id, token = setup.key(event)
                at = args.fault_seconds / 3
                events = [(at, event, action)]
                asyncio.run(
                    load(url, token, setup.record, args.fault_seconds, args.clients, faulted,
                         events=events)  # fmt: skip
                )
                return faulted, key_id

            killed, key_id = under_fault("ray, a replica killed", "kill", kill_a_replica)
            back = time.perf_counter()
            while replicas_running() < args.replicas and time.perf_counter() - back < 120:
                time.sleep(0.5)
            killed.notes.append(f"replicas running after: {replicas_running()} of {args.replicas}")
            setup.account(killed, key_id)
            runs.append(killed)

            if not args.no_postgres_restart:
                restarted, key_id = under_fault(
                    "ray, PostgreSQL restarted", "restart", restart_postgres
                )
                time.sleep(1)
                setup.account(restarted, key_id)
                runs.append(restarted)
        finally:
            if ray.is_initialized():
                serve.shutdown()
                ray.shutdown()

        try:
            port = free_port()
            peer = uvicorn_peer(setup, port)
            try:
                single = Run("uvicorn, 1 process (peer)")
                key_id, token = setup.key("peer")
                asyncio.run(
                    load(
                        f"http://127.0.0.1:{port}",
                        token,
                        setup.record,
                        args.seconds,
                        args.clients,
                        single,
                    )  # fmt: skip
                )
                setup.account(single, key_id)
                runs.append(single)
            finally:
                peer.terminate()
                peer.wait(timeout=60)
        finally:
            setup.close()

    head = ["run", "s", "200", "errors", "p50 ms", "p99 ms", "req/s", "audited/answered", "chain"]
    print(f"\n{args.clients} clients, POST /v1/models/heart/predict (1 record), "
          f"{os.cpu_count()} CPUs\n")  # fmt: skip
    rows = [head, *(r.row() for r in runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    for r in runs:
        others = {str(k): v for k, v in r.statuses.items() if k != 200}
        print(f"\n{r.name}: statuses other than 200: {others or 'none'}")
        for name, after in r.first_ok_after.items():
            print(f"  first 200 sent after the {name}: {after:.1f} s after it began")
        for note in r.notes:
            print(f"  {note}")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()

"""`medserve serve --engine ray`: the same app and API on two Ray Serve replicas sharing one
PostgreSQL registry and one Redis. Keys, roles, limits and the audit chain hold across
replicas; a replica killed mid-load costs only the requests it had in flight, loses no
answered request's audit record, and comes back."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import psycopg
import pytest

from medserve.config import Settings
from medserve.flows.train import TrainRequest, train_and_register
from medserve.security.api_keys import ApiKeyStore
from medserve.security.audit import AuditLog
from medserve.security.rate_limit import WINDOW_S
from medserve.storage import Registry
from medserve.storage.keystore import KeyStore
from medserve.storage.upgrade import upgrade_database
from support.servers import free_port, json_records

pytestmark = [pytest.mark.ray, pytest.mark.postgres, pytest.mark.redis]

PER_MINUTE = 200
REDIS_URL = "redis://127.0.0.1:6379/6"  # not a test worker's (conftest: 8-15)


class Deployed:
    def __init__(self, settings: Settings, url: str, records: list[dict]) -> None:
        self.settings, self.url, self.records = settings, url, records
        self.registry = Registry(settings)

    def key(self, role: str = "predictor") -> tuple[str, str]:
        key, token = ApiKeyStore(self.registry.engine).create(role, name=f"ray {role}")
        return key.id, token

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def audit(self) -> AuditLog:
        return AuditLog(self.registry.engine, KeyStore(self.settings).purpose_key("audit"))

    def audited(self, key_id: str) -> Counter:
        return Counter(r["status"] for r in self.audit().export() if r["key_id"] == key_id)


def _replicas(state: str = "RUNNING") -> int:
    from ray import serve

    from medserve.serve.ray_serve import APP_NAME, DEPLOYMENT_NAME

    status = serve.status().applications[APP_NAME].deployments[DEPLOYMENT_NAME]
    return status.replica_states.get(state, 0)


@pytest.fixture(scope="module")
def deployed(ray_local, postgres_user, heart_csv, tmp_path_factory) -> Iterator[Deployed]:
    import redis
    from ray import serve

    from medserve.serve.ray_serve import Scaling, check_shared, run

    redis.Redis.from_url(REDIS_URL).flushdb()
    database = f"medserve_ray_{uuid.uuid4().hex[:8]}"
    admin = dict(host="127.0.0.1", port=5432, user=postgres_user, dbname="test", autocommit=True)
    with psycopg.connect(**admin) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
    home: Path = tmp_path_factory.mktemp("ray") / "home"
    settings = Settings(
        home=home,
        database_url=f"postgresql+psycopg://{postgres_user}@127.0.0.1:5432/{database}",
        shared_state_url=REDIS_URL,
        rate_limit_per_minute=PER_MINUTE,
        key_cache_s=1.0,
    )
    upgrade_database(settings.database_url)
    train_and_register(
        settings,
        TrainRequest(
            data=heart_csv, name="heart", target="num", positive_if=">0", family="logistic", cv=3
        ),
    )
    check_shared(settings)
    port = free_port()
    run(settings, "127.0.0.1", port, Scaling(2, 2, replica_cpus=0.5))
    frame = pd.read_csv(heart_csv, dtype=str, keep_default_na=False, na_values=[""])
    records = json_records(frame.drop(columns=["id", "num"]).head(5))
    service = Deployed(settings, f"http://127.0.0.1:{port}", records)
    try:
        yield service
    finally:
        serve.shutdown()
        service.registry.close()
        with psycopg.connect(**admin) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _whole_window_left(margin_s: float = 15.0) -> None:
    left = WINDOW_S - time.time() % WINDOW_S
    if left < margin_s:
        time.sleep(left + 0.1)


def test_two_replicas_serve_the_api_and_audit_every_answer(deployed: Deployed) -> None:
    assert _replicas() == 2
    key_id, token = deployed.key()
    with deployed.client(token) as client:
        answers = [
            client.post("/v1/models/heart/predict", json={"records": deployed.records})
            for _ in range(12)
        ]
        assert {a.status_code for a in answers} == {200}
        assert len(answers[0].json()["predictions"]) == 5
        assert client.get("/healthz").status_code == 200
    with deployed.client(None) as anonymous:
        refused = anonymous.get("/v1/models")
        assert refused.status_code == 401
        assert refused.headers["content-type"].startswith("application/problem+json")
    with deployed.client(deployed.key("trainer")[1]) as trainer:
        assert trainer.get("/v1/models").status_code == 200
    assert deployed.audited(key_id) == Counter({200: 12})
    assert deployed.audit().verify().ok


def test_a_role_is_enforced_by_every_replica(deployed: Deployed) -> None:
    _, token = deployed.key("auditor")
    with deployed.client(token) as client:
        statuses = {
            client.post("/v1/models/heart/predict", json={"records": deployed.records}).status_code
            for _ in range(6)
        }
    assert statuses == {403}


def test_a_revoked_key_is_refused_by_every_replica_within_the_key_cache(
    deployed: Deployed,
) -> None:
    key_id, token = deployed.key()
    with deployed.client(token) as client:
        assert {client.get("/v1/models").status_code for _ in range(8)} == {200}  # both cached
        ApiKeyStore(deployed.registry.engine).revoke(key_id)
        time.sleep(deployed.settings.key_cache_s + 0.5)
        assert {client.get("/v1/models").status_code for _ in range(10)} == {401}


def test_a_key_limit_is_counted_once_across_replicas(deployed: Deployed) -> None:
    _, token = deployed.key()
    _whole_window_left()
    with deployed.client(token) as client:
        statuses = Counter(client.get("/v1/models").status_code for _ in range(PER_MINUTE + 6))
    assert statuses == Counter({200: PER_MINUTE, 429: 6})


def test_a_replica_killed_mid_load_loses_only_its_requests_in_flight(
    deployed: Deployed,
) -> None:
    import ray

    key_id, token = deployed.key()
    outcomes: Counter = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    clients = 6

    def load() -> None:
        with deployed.client(token) as client:
            while not stop.is_set():
                try:
                    answer = client.get("/v1/models/heart")
                    status = answer.status_code
                    if status >= 500 and answer.headers["content-type"].startswith("application/"):
                        status = "the app's own 5xx"
                except httpx.HTTPError:
                    status = "failed"
                with lock:
                    outcomes[status] += 1

    _whole_window_left(margin_s=0)
    threads = [threading.Thread(target=load) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    replica = next(
        actor
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith("SERVE_REPLICA")
    )
    ray.kill(ray.get_actor(replica["name"], namespace=replica["namespace"]), no_restart=True)
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    # A request in flight on the killed replica fails at the connection or gets the
    # proxy's own 500 (text, not the app's problem+json); every other one is answered.
    assert outcomes["the app's own 5xx"] == 0
    failed = sum(n for status, n in outcomes.items() if status == "failed" or status >= 500)
    answered = sum(outcomes.values()) - failed
    assert outcomes[200] > 0
    assert failed <= clients  # only the requests in flight on the killed replica
    audited = sum(deployed.audited(key_id).values())
    # Every answered request has its record; a request the killed replica answered just as
    # it died may have one too, its answer lost.
    assert answered <= audited <= answered + failed
    assert deployed.audit().verify().ok
    deadline = time.monotonic() + 90
    while _replicas() < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _replicas() == 2  # Ray Serve started a new one

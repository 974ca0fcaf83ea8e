"""Two replicas of the service on one PostgreSQL registry, as Ray Serve or uvicorn workers
run them: an EHR token used at one is refused at the other (the jti lives in the
database), a key revoked anywhere is refused by both within the key cache, and both
extend one audit chain that verifies."""

from __future__ import annotations

import threading
import time

import pytest

from medserve.http.app import create_app
from medserve.security.api_keys import ApiKeyStore
from support.ehr_tokens import Ehr

pytestmark = pytest.mark.postgres

BASE = "http://testserver"


@pytest.fixture
def ehr(tmp_path) -> Ehr:
    return Ehr(tmp_path)


@pytest.fixture
def replicas(start_service, serve_app, postgres_url, ehr):
    """Two services (apps with their own caches, limits, threads) on one database."""
    first = start_service(postgres_url, cds_issuers=ehr.trust(), public_url=BASE, key_cache_s=0.5)
    second = serve_app(create_app(first.settings), first.settings)
    second.keys, second.key_ids = first.keys, first.key_ids  # the keys are the database's
    return first, second


def test_a_token_used_at_one_replica_is_refused_at_the_other(replicas, ehr) -> None:
    first, second = replicas
    headers = ehr.headers(f"{BASE}/cds-services")
    with first.client(role=None) as one, second.client(role=None) as two:
        assert one.get("/cds-services", headers=headers).status_code == 200
        replayed = two.get("/cds-services", headers=headers)
        assert replayed.status_code == 401
        assert "replay" in replayed.json()["detail"] or "used" in replayed.json()["detail"]


def test_a_revoked_key_is_refused_by_both_within_the_key_cache(replicas) -> None:
    first, second = replicas
    key, token = ApiKeyStore(first.app.state.registry.engine).create("predictor", name="x")
    headers = {"Authorization": f"Bearer {token}"}
    with first.client(role=None) as one, second.client(role=None) as two:
        assert one.get("/v1/models", headers=headers).status_code == 200
        assert two.get("/v1/models", headers=headers).status_code == 200  # both cache it
        ApiKeyStore(first.app.state.registry.engine).revoke(key.id)  # `medserve keys revoke`
        time.sleep(first.settings.key_cache_s + 0.2)
        assert one.get("/v1/models", headers=headers).status_code == 401
        assert two.get("/v1/models", headers=headers).status_code == 401


def test_both_replicas_extend_one_audit_chain(replicas) -> None:
    first, second = replicas
    errors: list[BaseException] = []

    def hammer(service) -> None:
        try:
            with service.client() as client:
                for _ in range(40):
                    assert client.get("/v1/models").status_code == 200
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(s,)) for s in (first, second) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for service in (first, second):
        service.app.state.audit.flush()
    log = first.app.state.audit.log
    records = [r for r in log.export() if r["key_id"] == first.key_ids["predictor"]]
    assert len(records) == 160
    seqs = [r["seq"] for r in log.export()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert log.verify().ok

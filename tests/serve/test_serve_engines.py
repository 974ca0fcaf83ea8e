"""`medserve serve --engine ray|uvicorn --workers --replicas` and `medserve db upgrade`: what
replicas must share is checked before anything starts, each refusal one line saying what
to set; uvicorn's worker processes share one registry, one audit chain and one limit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from medserve.cli import app
from medserve.config import Settings
from medserve.flows.train import TrainRequest, train_and_register
from medserve.security.api_keys import ApiKeyStore
from medserve.security.audit import AuditLog
from medserve.storage import Registry
from medserve.storage.keystore import KeyStore
from support.servers import free_port

runner = CliRunner()


def _serve(env: dict[str, str], *args: str):
    return runner.invoke(app, ["serve", *args], env=env)


@pytest.fixture
def env(tmp_path: Path, monkeypatch) -> dict[str, str]:
    for name in ("MEDSERVE_DATABASE_URL", "MEDSERVE_SHARED_STATE_URL"):
        monkeypatch.delenv(name, raising=False)
    return {"MEDSERVE_HOME": str(tmp_path / "home")}


def test_ray_refuses_a_sqlite_registry(env) -> None:
    result = _serve(env, "--engine", "ray", "--replicas", "2")
    assert result.exit_code != 0
    assert "needs a PostgreSQL registry" in result.output
    assert "medserve db upgrade" in result.output
    assert "Traceback" not in result.output


@pytest.mark.postgres
def test_ray_refuses_unshared_limits_then_an_unmigrated_database(env, postgres_url) -> None:
    env["MEDSERVE_DATABASE_URL"] = postgres_url
    result = _serve(env, "--engine", "ray")
    assert result.exit_code != 0 and "MEDSERVE_SHARED_STATE_URL=redis://" in result.output
    env["MEDSERVE_SHARED_STATE_URL"] = "redis://127.0.0.1:6379/15"
    result = _serve(env, "--engine", "ray")
    assert result.exit_code != 0
    assert "not at the newest schema: run `medserve db upgrade` once" in result.output


@pytest.mark.postgres
def test_db_upgrade_migrates_once(env, postgres_url) -> None:
    env["MEDSERVE_DATABASE_URL"] = postgres_url
    first = runner.invoke(app, ["db", "upgrade", "--json"], env=env)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["migrated"] is True
    again = runner.invoke(app, ["db", "upgrade", "--json"], env=env)
    assert json.loads(again.stdout) == {**json.loads(first.stdout), "migrated": False}


def test_db_upgrade_says_when_the_database_cannot_be_reached(env) -> None:
    env["MEDSERVE_DATABASE_URL"] = f"postgresql+psycopg://u:pw@127.0.0.1:{free_port()}/x"
    result = runner.invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code != 0
    assert "cannot migrate the registry database" in result.output
    assert "pw" not in result.output  # the password is masked


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--engine", "spark"], "give one of uvicorn, ray"),
        (["--replicas", "2"], "--replicas and --max-replicas need --engine ray"),
        (["--engine", "ray", "--workers", "2"], "on Ray give --replicas"),
        (["--workers", "2"], "MEDSERVE_SHARED_STATE_URL=redis://"),
        (["--engine", "ray", "--replicas", "3", "--max-replicas", "2"], "is below --replicas"),
    ],
)
def test_engine_options_that_do_not_fit_are_refused(env, args, said) -> None:
    result = _serve(env, *args)
    assert result.exit_code != 0
    assert said in result.output, result.output


@pytest.mark.slow
@pytest.mark.redis
def test_uvicorn_workers_share_one_registry_audit_and_limit(tmp_path, heart_csv, redis_url) -> None:
    settings = Settings(home=tmp_path / "home", shared_state_url=redis_url)
    train_and_register(
        settings,
        TrainRequest(
            data=heart_csv, name="heart", target="num", positive_if=">0", family="logistic", cv=3
        ),
    )
    with Registry(settings) as registry:
        key, token = ApiKeyStore(registry.engine).create("predictor", name="workers")
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "MEDSERVE_HOME": str(settings.home),
        "MEDSERVE_SHARED_STATE_URL": redis_url,
        "MEDSERVE_RATE_LIMIT_PER_MINUTE": "25",
    }
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "medserve", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            left = 60 - time.time() % 60
            if left < 20:
                time.sleep(left + 0.1)
            statuses = Counter(client.get("/v1/models").status_code for _ in range(30))
        assert statuses == Counter({200: 25, 429: 5})  # one limit for both workers
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    text = (tmp_path / "server.log").read_text()
    assert "2 worker processes" in text, text
    with Registry(settings) as registry:
        audit = AuditLog(registry.engine, KeyStore(settings).purpose_key("audit"))
        records = [r for r in audit.export() if r["key_id"] == key.id]
        assert len(records) == 30
        assert audit.verify().ok


def test_scaling_is_fixed_or_autoscaled_between_floor_and_ceiling() -> None:
    from medserve.serve.ray_serve import Scaling

    assert Scaling(3, 3).options() == {"num_replicas": 3}
    autoscaling = Scaling(2, 6).options()["autoscaling_config"]
    assert (autoscaling["min_replicas"], autoscaling["initial_replicas"]) == (2, 2)
    assert autoscaling["max_replicas"] == 6


def test_the_kuberay_builder_checks_what_the_command_checks(env, monkeypatch) -> None:
    from medserve.errors import ConfigError
    from medserve.serve.ray_serve import app_builder

    monkeypatch.setenv("MEDSERVE_HOME", env["MEDSERVE_HOME"])
    with pytest.raises(ConfigError, match="needs a PostgreSQL registry"):
        app_builder({"replicas": "2"})


def test_replicas_are_told_no_secret(tmp_path) -> None:
    from medserve.serve.ray_serve import replica_settings

    told = replica_settings(
        Settings(
            home=tmp_path,
            database_url="postgresql+psycopg://medserve:pw@db/medserve",
            shared_state_url="redis://127.0.0.1:6379/0",
            master_key="c2VjcmV0",
            fhir_server_token="t0ken",
            rate_limit_per_minute=5,
        )
    )
    assert told == {
        "home": str(tmp_path.resolve()),
        "shared_state_url": "redis://127.0.0.1:6379/0",  # no password in it
        "rate_limit_per_minute": 5,
    }
    in_query = Settings(home=tmp_path, shared_state_url="redis://127.0.0.1:6379/0?password=pw")
    assert "shared_state_url" not in replica_settings(in_query)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.redis
@pytest.mark.postgres
def test_the_ray_engine_serves_from_the_command_line_and_stops_on_sigterm(
    tmp_path, heart_csv, postgres_url, redis_url
) -> None:
    pytest.importorskip("ray")
    settings = Settings(home=tmp_path / "home", database_url=postgres_url)
    train_and_register(
        settings,
        TrainRequest(
            data=heart_csv, name="heart", target="num", positive_if=">0", family="logistic", cv=3
        ),
    )
    with Registry(settings) as registry:
        _, token = ApiKeyStore(registry.engine).create("predictor", name="ray cli")
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MEDSERVE_HOME": str(settings.home),
        "MEDSERVE_DATABASE_URL": postgres_url,
        "MEDSERVE_SHARED_STATE_URL": redis_url,
        "MEDSERVE_RAY_NUM_CPUS": "2",
    }
    log_path = tmp_path / "ray-serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "medserve", "serve", "--engine", "ray", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            headers = {"Authorization": f"Bearer {token}"}
            answer = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=headers)
            assert answer.status_code == 200, log_path.read_text()
            assert [m["name"] for m in answer.json()["models"]] == ["heart"]
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=90)
    text = log_path.read_text()
    assert code == 0, text
    assert "on Ray Serve, 1 replica\n" in text, text
    assert "stopping: replicas finish their requests" in text
    assert "Traceback" not in text

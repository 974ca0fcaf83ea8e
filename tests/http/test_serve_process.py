"""`medserve serve` as a process: start-up checks, TLS, logs free of patient data,
graceful shutdown."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from medserve.config import Settings
from medserve.security.api_keys import ApiKeyStore
from medserve.security.audit import AuditLog
from medserve.storage import Registry
from medserve.storage.keystore import KeyStore
from support.servers import copy_models, free_port

# Each test starts `medserve serve` processes: out of the fast lane (make test-fast).
pytestmark = pytest.mark.slow
# uvicorn finishes in-flight requests, then re-raises SIGTERM so the exit says why.
GRACEFUL = (0, -signal.SIGTERM)


def environment(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSERVE_")}
    return {**env, "MEDSERVE_HOME": str(home), **extra}


class ServerProcess:
    def __init__(self, home: Path, *args: str, scheme: str = "http", verify=True, **env) -> None:
        self.port = free_port()
        self.log_path = home.parent / f"server-{self.port}.log"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.verify = verify
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "medserve", "serve", "--port", str(self.port), *args],
            env=environment(home, **env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", verify=self.verify).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def stop(self) -> int:
        """SIGTERM, as an orchestrator sends it; uvicorn re-raises it after a clean stop."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode

    def output(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def home(tmp_path, seed_home) -> Path:
    settings = Settings(home=tmp_path / "home")
    copy_models(seed_home, settings)
    return settings.home


def new_key(home: Path, role: str = "predictor") -> tuple[str, str]:
    with Registry(Settings(home=home)) as registry:
        key, token = ApiKeyStore(registry.engine).create(role)
    return key.id, token


def test_logs_and_database_hold_no_patient_values(home, heart_records):
    _, token = new_key(home)
    server = ServerProcess(home)
    try:
        server.wait_ready()
        markers = {"age": 71.123456789, "oldpeak": 3.987654321, "cp": "zz-marker-level-qq"}
        record = {**heart_records[0], "age": markers["age"], "oldpeak": markers["oldpeak"]}
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=headers) as client:
            assert client.post("/v1/models/heart/predict", json={"records": [record]}).is_success
            bad = {**record, "cp": markers["cp"]}
            assert (
                client.post("/v1/models/heart/predict", json={"records": [bad]}).status_code == 422
            )
    finally:
        assert server.stop() in GRACEFUL
    output = server.output()
    assert '"route": "/v1/models/{name}/predict"' in output  # structured JSON access lines
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    for value in ("71.123456789", "3.987654321", markers["cp"]):
        assert value not in output
        assert value.encode() not in stored


def test_serve_refuses_to_start_on_an_unreadable_registry(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "medserve", "serve", "--port", str(free_port())],
        env=environment(
            tmp_path / "home",
            MEDSERVE_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "cannot open the registry database" in result.stderr
    assert "Traceback" not in result.stderr


def test_first_start_says_how_to_create_a_key(home):
    server = ServerProcess(home)
    try:
        server.wait_ready()
    finally:
        server.stop()
    assert "medserve keys create --role predictor" in server.output()


def test_tls_pass_through(home, tmp_path, heart_records):
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certificate.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    certificate.private_key_pem.write_to_path(tmp_path / "key.pem")
    authority.cert_pem.write_to_path(tmp_path / "ca.pem")
    _, token = new_key(home)
    server = ServerProcess(
        home,
        "--ssl-certfile",
        str(tmp_path / "cert.pem"),
        "--ssl-keyfile",
        str(tmp_path / "key.pem"),
        scheme="https",
        verify=ssl.create_default_context(cafile=str(tmp_path / "ca.pem")),
    )
    try:
        server.wait_ready()
        with httpx.Client(
            base_url=server.url,
            verify=server.verify,
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            response = client.post("/v1/models/heart/predict", json={"records": heart_records[:2]})
        assert response.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/healthz")  # not trusted without the test CA
    finally:
        server.stop()


def test_graceful_shutdown_finishes_in_flight_requests(home, heart_records):
    _, token = new_key(home)
    server = ServerProcess(home)
    server.wait_ready()
    payload = json.dumps({"records": heart_records * 2}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = threading.Barrier(5)
    signalled = threading.Event()

    def body():
        # Half the body, then wait until the server has been told to stop: the request
        # is in flight when SIGTERM arrives.
        yield payload[: len(payload) // 2]
        started.wait(timeout=30)
        signalled.wait(timeout=30)
        yield payload[len(payload) // 2 :]

    def call(_: int) -> int:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            return client.post("/v1/models/heart/predict", content=body()).status_code

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(call, i) for i in range(4)]
        started.wait(timeout=30)
        time.sleep(0.2)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        signalled.set()
        statuses = [f.result() for f in futures]
    assert server.stop() in GRACEFUL
    assert "Finished server process" in server.output()
    assert statuses == [200] * 4
    settings = Settings(home=home)
    with Registry(settings) as registry:
        log = AuditLog(registry.engine, KeyStore(settings).purpose_key("audit"))
        predicted = [r for r in log.export() if r["route"].endswith("/predict")]
        assert len(predicted) == 4 and log.verify().ok

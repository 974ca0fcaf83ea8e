"""A real FHIR R4 server for tests: sekmet (sekmet-fhir, SQLite) started on a free
loopback port, its database in the test's directory, loaded with transaction Bundles
and stopped when the test (or module) is done.

    with running_fhir_server(tmp_path) as server:
        patient_id = server.load(bundle)
        FhirClient(server.base_url).patient_resources(patient_id, binding)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from support.servers import free_port

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass
class FhirServer:
    """A running sekmet: its FHIR base ("http://127.0.0.1:P/fhir") and, when it asks for
    one, the bearer token it accepts."""

    base_url: str
    token: str | None
    log_path: Path

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def load(self, bundle: dict) -> str:
        """Store a transaction Bundle (its urn:uuid references become the server's ids)
        and return the id the server gave its Patient."""
        response = httpx.post(self.base_url, json=bundle, headers=self.headers, timeout=60)
        if response.status_code != 200:
            raise AssertionError(
                f"the FHIR server refused the bundle: HTTP {response.status_code} "
                f"{response.text[:500]}"
            )
        answer = response.json()
        # A transaction-response has one entry per request entry, in the same order.
        for sent, got in zip(bundle["entry"], answer["entry"], strict=True):
            if sent["resource"]["resourceType"] == "Patient":
                location = got["response"]["location"]  # {base}/Patient/{id}/_history/1
                return location.split("/_history/")[0].rsplit("/", 1)[-1]
        raise AssertionError("the bundle has no Patient")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_fhir_server(tmp_path: Path, *, tokens: Sequence[str] = ()) -> Iterator[FhirServer]:
    """sekmet serving on 127.0.0.1, its SQLite database under ``tmp_path``; with
    ``tokens``, it accepts only requests bearing one of them (else no authentication)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/fhir"
    settings = {
        # Links in search Bundles (next pages) are written on this base.
        "base_url": base_url,
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(tmp_path / "data"),
        "db_path": str(tmp_path / "sekmet.db"),
        "own_private_key_path": str(tmp_path / "keys" / "sekmet_private.pem"),
        # No simulated hospital reacting to writes, no traffic log, no peers: a plain store.
        "simulator": {"enabled": False},
        "log_inbound": False,
        "validation": {"inbound": "strict", "tx_server": "n/a"},
        "server_auth": {"types": ["bearer"], "tokens": list(tokens)} if tokens else {},
    }
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump(settings))
    sekmet = Path(sys.executable).parent / "sekmet"
    env = {key: value for key, value in os.environ.items() if not key.startswith("SEKMET_")}
    log_path = tmp_path / "sekmet.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(sekmet),
                "serve",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = FhirServer(base_url, tokens[0] if tokens else None, log_path)
    try:
        _wait_ready(server, process)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)


def _wait_ready(server: FhirServer, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sekmet exited with {process.returncode}:\n{server.log()[-4000:]}")
        try:
            # /metadata answers without authentication.
            if httpx.get(f"{server.base_url}/metadata", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"sekmet did not answer within {READY_TIMEOUT_S:g} s:\n{server.log()[-4000:]}"
    )

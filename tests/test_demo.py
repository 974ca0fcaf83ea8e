"""`medserve demo` (what `make demo` runs): trains on the bundled data, writes the report,
and prints a key and a curl command that work against the service as printed."""

from __future__ import annotations

import json
import shlex

import httpx
from typer.testing import CliRunner

from medserve.cli import app
from medserve.config import Settings
from medserve.http.app import create_app
from support.servers import ThreadServer, free_port


def test_demo_prints_a_working_key_and_request(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MEDSERVE_HOME", str(home))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["demo", "--no-serve"])
    assert result.exit_code == 0, result.output
    assert "Metrics on out-of-fold predictions of 5-fold cross-validation (920 rows)" in (
        " ".join(result.output.split())
    )
    assert "report.html" in result.output
    report = home / "reports" / "heart-disease" / "v1" / "report.html"
    assert "Model report: heart-disease" in report.read_text(encoding="utf-8")
    curl = shlex.split(result.output.split("Try it:\n", 1)[1].strip().splitlines()[0])
    headers = dict(curl[i + 1].split(": ", 1) for i, arg in enumerate(curl) if arg == "-H")
    body = json.loads(curl[curl.index("-d") + 1])
    port = free_port()
    url = curl[curl.index("POST") + 1].replace(":8000/", f":{port}/")
    with ThreadServer(create_app(Settings(home=home)), port):
        response = httpx.post(url, headers=headers, json=body, timeout=30)
    assert response.status_code == 200, response.text
    prediction = response.json()["predictions"][0]
    assert prediction["explanation"]["summary"].startswith("Risk ")

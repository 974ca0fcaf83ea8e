"""GET /v1/models/{name}/report: JSON by default, the HTML page for browsers, the same
credential as the metadata routes, and 404 problem+json when there is no report."""

from __future__ import annotations

import json

import pytest

from medserve.config import Settings
from medserve.flows import TrainRequest, train_and_register
from medserve.http.app import create_app
from medserve.http.routes.report import wants_html
from medserve.storage import Registry

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def report_service(tmp_path_factory, heart_csv, serve_app_for_module):
    """heart:1 with its report (no intended use given), heart:2 registered without one."""
    settings = Settings(home=tmp_path_factory.mktemp("report-http") / "home")
    request = TrainRequest(
        data=heart_csv, target="num", positive_if=">0", family="logistic", cv=3, name="heart"
    )
    first = train_and_register(settings, request).version
    with Registry(settings) as registry:
        registry.register(
            "heart", registry.load(first), family=first.family, schema=first.schema,
            metrics=first.metrics, threshold=first.threshold, params=first.params,
            lineage=first.lineage, data_sha256=first.data_sha256,
        )  # fmt: skip
        registry.promote("heart:1")
    return serve_app_for_module(create_app(settings), settings)


def stored_json(service, version: int = 1) -> dict:
    path = service.settings.home / f"reports/heart/v{version}/report.json"
    return json.loads(path.read_text())


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/html;q=0.5, */*"])
def test_json_is_the_default(report_service, accept):
    headers = {"Accept": accept} if accept else {}
    with report_service.client() as client:
        response = client.get("/v1/models/heart/report", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-location"] == "/v1/models/heart/versions/1/report"
    assert response.json() == stored_json(report_service)
    intended_use = response.json()["intended_use"]
    assert not intended_use["supplied"]
    assert intended_use["statement"] == (
        "Intended use: not supplied (pass --intended-use or --model-card)"
    )


def test_browsers_get_the_self_contained_page(report_service):
    browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    with report_service.client("auditor") as client:
        response = client.get(
            "/v1/models/heart/versions/1/report", headers={"Accept": browser_accept}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["vary"] == "Accept"
    assert "<title>Model report: heart:1</title>" in response.text
    assert "Intended use: not supplied" in response.text


def test_missing_reports_are_404_problems(report_service):
    with report_service.client() as client:
        no_report = client.get("/v1/models/heart/versions/2/report")
        no_version = client.get("/v1/models/heart/versions/9/report")
        no_model = client.get("/v1/models/nope/report", headers={"Accept": "text/html"})
    for response in (no_report, no_version, no_model):
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
    assert no_report.json()["detail"].startswith("heart:2 has no report")
    assert "no version 9" in no_version.json()["detail"]
    assert "no model named 'nope'" in no_model.json()["detail"]


def test_a_credential_is_required(report_service):
    with report_service.client(role=None) as client:
        response = client.get("/v1/models/heart/report", headers={"Accept": "text/html"})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("text/*", False),
        ("text/html", True),
        ("TEXT/HTML", True),
        ("application/json, text/html", False),
        ("application/json;q=0.4, text/html", True),
        ("text/html;q=0.1, application/json;q=0.2", False),
        ("text/html;q=oops", False),
    ],
)
def test_accept_header_negotiation(accept, html):
    assert wants_html(accept) is html


def test_a_report_stored_without_its_page_is_rendered_for_the_answer_only(reported_service):
    page = reported_service.settings.home / "reports/heart/v1/report.html"
    page.unlink()
    with reported_service.client("auditor") as client:
        response = client.get("/v1/models/heart/report", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "<title>Model report: heart:1</title>" in response.text
    assert not page.exists()  # a GET only reads

"""Reading a stored report only reads: the flow and both GET routes leave the reports
directory as it was, and a report stored without its page gets one rendered in memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from medserve.config import Settings
from medserve.errors import IntegrityError
from medserve.flows import TrainRequest, restore_page, stored_report, train_and_register
from medserve.flows.report import read_report
from medserve.http.app import create_app
from medserve.security.api_keys import ApiKeyStore
from medserve.storage import Registry
from support.reports import files_under
from support.servers import ThreadServer, free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory, heart_csv) -> Iterator[tuple[Settings, str, str]]:
    """heart:1 with its report, served on a loopback port; a predictor key."""
    settings = Settings(home=tmp_path_factory.mktemp("report-reads") / "home")
    request = TrainRequest(
        data=heart_csv, target="num", positive_if=">0", family="logistic", cv=3, name="heart"
    )
    train_and_register(settings, request)
    app = create_app(settings)
    _, key = ApiKeyStore(app.state.registry.engine).create("predictor", name="reads")
    port = free_port()
    with ThreadServer(app, port):
        yield settings, f"http://127.0.0.1:{port}", key


@pytest.fixture
def page(served) -> Iterator[Path]:
    """The stored page of heart:1, put back as it was after each test."""
    settings, _, _ = served
    path = settings.reports_dir / "heart" / "v1" / "report.html"
    content = path.read_bytes()
    yield path
    path.write_bytes(content)


@pytest.mark.parametrize("stored_page", [True, False], ids=["with-page", "without-page"])
@pytest.mark.parametrize("accept", ["application/json", "text/html"])
def test_get_leaves_the_reports_directory_as_it_was(served, page, stored_page, accept):
    settings, url, key = served
    if not stored_page:
        page.unlink()  # as an older release stored it
    before = files_under(settings.reports_dir)
    headers = {"Authorization": f"Bearer {key}", "Accept": accept}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        responses = [client.get(path) for path in ("/v1/models/heart/report",) * 2]
        responses.append(client.get("/v1/models/heart/versions/1/report"))
    for response in responses:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(accept)
    if accept == "text/html":
        assert all("<title>Model report: heart:1</title>" in r.text for r in responses)
        assert "default-src 'none'" in responses[0].headers["content-security-policy"]
    else:
        assert responses[0].json()["kind"] == "training"
    assert files_under(settings.reports_dir) == before
    assert page.exists() is stored_page


def test_a_report_without_its_page_is_rendered_in_memory_and_written_only_on_request(served, page):
    settings, _, _ = served
    stored = page.read_text()
    page.unlink()
    before = files_under(settings.reports_dir)
    with Registry(settings) as registry:
        found = stored_report(registry, settings, "heart")
    assert found.html_path is None
    rendered = found.page()
    assert "<title>Model report: heart:1</title>" in rendered
    assert files_under(settings.reports_dir) == before
    assert restore_page(found) == page  # what `medserve report` does, on the user's command
    assert page.read_text() == rendered
    assert rendered == stored  # the JSON alone gives back the page training wrote


@pytest.mark.parametrize(
    "text", ["{not json", '{"kind": "training", "notices": "not a list"}', '{"kind": "other"}']
)
def test_a_stored_file_that_is_not_a_report_is_a_clear_error(tmp_path, text):
    broken = tmp_path / "report.json"
    broken.write_text(text)
    with pytest.raises(IntegrityError, match=r"^report\.json is not a medserve report \("):
        read_report(broken)

"""The model report as a reader sees it: Debian's headless Chromium opens the page served
on a loopback port (and the file itself, offline), every plot is labelled, nothing is
fetched from anywhere, and the page fits the window."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from medserve.config import Settings
from medserve.flows import TrainRequest, train_and_register
from medserve.http.app import create_app
from medserve.security.api_keys import ApiKeyStore
from support.browser import CHROMIUM_ARGS, chromium_or_skip
from support.reports import PLOT_NAMES
from support.servers import ThreadServer, free_port

HEADINGS = [
    "Intended use and limitations",
    "Data",
    "Discrimination",
    "Classification at the chosen threshold",
    "Calibration",
    "Clinical utility: decision curve",
    "Subgroups",
    "Explanations",
    "Model",
]
PLOTS = PLOT_NAMES

# Per inline SVG: its title(s), x/y axis labels and legend texts, read from the DOM.
# matplotlib's SVG groups: axes_N > text_N is a title; matplotlib.axis_N holds the ticks
# (xtick_/ytick_) and, as a direct text_N child, the axis label; legend_N is a legend.
LABELS_SCRIPT = """
() => [...document.querySelectorAll('figure svg')].map(svg => {
  const text = el => (el ? el.textContent.trim() : '');
  const axisLabels = tick => [...svg.querySelectorAll('g[id^="matplotlib.axis"]')]
    .filter(axis => axis.querySelector(`:scope > g[id^="${tick}"]`))
    .map(axis => text(axis.querySelector(':scope > g[id^="text_"]')));
  return {
    name: svg.getAttribute('aria-label'),
    titles: [...svg.querySelectorAll('g[id^="axes_"] > g[id^="text_"]')].map(text),
    x: axisLabels('xtick'),
    y: axisLabels('ytick'),
    legends: [...svg.querySelectorAll('g[id^="legend_"]')].map(text),
    width: svg.getBoundingClientRect().width,
  };
})
"""


@dataclass
class Served:
    url: str
    key: str
    html_file: Path


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    return chromium_or_skip()


@pytest.fixture(scope="module")
def served(tmp_path_factory, heart_csv) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("browser")
    (root / "card.yaml").write_text(
        "intended_use: Flag adults with chest pain for early cardiology review.\n"
        "limitations: [Four sites, 1981-1988.]\n"
    )
    settings = Settings(home=root / "home")
    outcome = train_and_register(
        settings,
        TrainRequest(
            data=heart_csv,
            target="num",
            positive_if=">0",
            family="logistic",
            cv=3,
            name="heart",
            groups=["dataset", "sex"],
            model_card=root / "card.yaml",
        ),
    )
    app = create_app(settings)
    _, key = ApiKeyStore(app.state.registry.engine).create("predictor", name="browser")
    port = free_port()
    with ThreadServer(app, port):  # binds 127.0.0.1 only
        yield Served(f"http://127.0.0.1:{port}", key, Path(outcome.report_html))


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def open_page(browser, url: str, headers: dict[str, str] | None = None):
    context = browser.new_context(
        viewport={"width": 1200, "height": 900}, extra_http_headers=headers or {}
    )
    page = context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    response = page.goto(url, wait_until="load")
    return context, page, response, requests, errors


def test_served_report_reads_well_in_chromium(browser, served, tmp_path):
    url = f"{served.url}/v1/models/heart/report"
    context, page, response, requests, errors = open_page(
        browser, url, {"Authorization": f"Bearer {served.key}"}
    )
    try:
        assert response.status == 200 and response.headers["content-type"].startswith("text/html")
        assert page.title() == "Model report: heart:1"
        assert requests == [url] and errors == []  # self-contained: nothing else fetched
        plots = page.evaluate(LABELS_SCRIPT)
        assert [plot["name"] for plot in plots] == PLOTS
        for plot in plots:
            assert any(plot["titles"]), plot
            assert any(plot["x"]) and any(plot["y"]), plot
            assert plot["legends"] and all(plot["legends"]), plot
            assert 300 < plot["width"] <= 700, plot
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        for heading in HEADINGS:
            assert page.get_by_role("heading", name=heading, exact=True).is_visible(), heading
        assert page.get_by_text("Flag adults with chest pain").is_visible()
        assert page.get_by_text("too small to judge", exact=False).first.is_visible()
        screenshot = tmp_path / "report.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 100_000
    finally:
        context.close()


def test_the_report_file_opens_offline(browser, served):
    context, page, _, requests, errors = open_page(browser, served.html_file.as_uri())
    try:
        assert requests == [served.html_file.as_uri()] and errors == []
        assert page.locator("figure svg").count() == len(PLOTS)
    finally:
        context.close()

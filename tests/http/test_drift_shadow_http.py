"""Drift and silent deployment on a live service, with real shifts: the heart model trained
on Cleveland and Hungary alarms when it scores VA Long Beach or Switzerland and stays
quiet on a resample of its own sites; a shadow version leaves production's answers
byte-identical and is compared with it on the same patients once outcomes arrive."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from medserve.config import Settings
from medserve.flows import TrainRequest, train_and_register
from medserve.flows.monitor import set_shadow
from medserve.http.app import create_app
from support.servers import json_records

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TRAINING_SITES = ("Cleveland", "Hungary")
IGNORED = ["id", "dataset"]
# One window for the whole test, whenever it runs (never split at midnight).
WINDOW_S = 10 * 365 * 86_400


@pytest.fixture(scope="module")
def heart_sites(heart_csv) -> pd.DataFrame:
    return pd.read_csv(heart_csv, dtype=str, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def sites_home(tmp_path_factory, heart_sites) -> Settings:
    """'sites' trained on Cleveland and Hungary: version 1 (production) and a different
    family as version 2 (a candidate, to shadow)."""
    settings = Settings(home=tmp_path_factory.mktemp("sites") / "home")
    training = heart_sites[heart_sites["dataset"].isin(TRAINING_SITES)]
    for family in ("logistic", "lightgbm"):
        train_and_register(
            settings,
            TrainRequest(
                data=training,
                name="sites",
                target="num",
                positive_if=">0",
                family=family,
                ignore=IGNORED,
                cv=3,
                source_name="heart-cleveland-hungary.csv",
            ),
        )
    from medserve.storage import Registry

    with Registry(settings) as registry:
        registry.promote("sites:1")
    return settings


@pytest.fixture
def sites_service(tmp_path, sites_home, serve_app):
    def start(**overrides):
        import shutil

        settings = Settings(home=tmp_path / "home", monitor_window_s=WINDOW_S, **overrides)
        shutil.copytree(sites_home.home, settings.home)
        return serve_app(create_app(settings), settings)

    return start


def _records(frame: pd.DataFrame) -> list[dict]:
    return json_records(frame.drop(columns=[*IGNORED, "num"]))


def _score(service, records, size=25, headers=None, accepted=None):
    """Each batch answered; records the service refuses (a value outside what training
    saw, as another site's may be) are left out, as a hospital's client would, and the
    positions of those answered are added to ``accepted``."""
    answers = []
    with service.client() as client:
        for start in range(0, len(records), size):
            batch = list(enumerate(records[start : start + size], start))
            while True:
                response = client.post(
                    "/v1/models/sites/predict",
                    json={"records": [record for _, record in batch]},
                    headers=headers or {},
                )
                if response.status_code != 422:
                    break
                refused = {error["record"] for error in response.json()["errors"]}
                batch = [item for i, item in enumerate(batch) if i not in refused]
            assert response.status_code == 200, response.text
            answers.append(response)
            if accepted is not None:
                accepted.extend(position for position, _ in batch)
    return answers


def _view(service) -> dict:
    with service.client("trainer") as client:
        response = client.get("/v1/models/sites/monitoring")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("site", ["VA Long Beach", "Switzerland"])
def test_drift_fires_when_the_model_scores_another_site(sites_service, heart_sites, site):
    service = sites_service()
    _score(service, _records(heart_sites[heart_sites["dataset"] == site]))
    view = _view(service)
    (window,) = view["drift"]["windows"]
    assert window["suppressed"] is False and window["version"] == 1
    alerts = view["drift"]["alerts"]
    assert alerts, window
    assert any(alert["feature"] for alert in alerts)
    with service.client("admin") as client:
        metrics = client.get("/metrics").text
    (gauge,) = re.findall(r'medserve_drift_alerts\{model="sites",version="1"\} (\S+)', metrics)
    assert float(gauge) == len(alerts)


@pytest.mark.parametrize("seed", [0, 1])
def test_drift_stays_quiet_on_a_resample_of_its_own_sites(sites_service, heart_sites, seed):
    service = sites_service()
    own = heart_sites[heart_sites["dataset"].isin(TRAINING_SITES)]
    _score(service, _records(own.sample(150, replace=True, random_state=seed)))
    view = _view(service)
    (window,) = view["drift"]["windows"]
    assert window["n"] == 150 and window["suppressed"] is False
    assert view["drift"]["alerts"] == []


def test_a_window_with_fewer_than_k_predictions_is_suppressed(sites_service, heart_sites):
    service = sites_service()
    _score(service, _records(heart_sites[heart_sites["dataset"] == "Cleveland"].head(9)))
    (window,) = _view(service)["drift"]["windows"]
    assert window["suppressed"] is True and window["n"] == 9
    assert "features" not in window and "alerts" not in window


def _without_ids(response) -> bytes:
    return re.sub(rb'"prediction_id":"[0-9a-f]{32}"', b'"prediction_id":""', response.content)


def test_shadow_scoring_leaves_production_answers_byte_identical(sites_service, heart_sites):
    va = heart_sites[heart_sites["dataset"] == "VA Long Beach"].head(60)
    records = _records(va)
    service = sites_service()
    headers = {"X-Request-Id": "same-request"}
    before = _score(service, records, headers=headers)
    assert service.app.state.scoring.recorder.flush(10)  # logged before there is a shadow
    set_shadow(service.settings, "sites:2", "test")
    import time

    time.sleep(2.1)  # the service re-reads its shadow every 2 s
    accepted: list[int] = []
    during = _score(service, records, headers=headers, accepted=accepted)
    assert [_without_ids(a) for a in before] == [_without_ids(a) for a in during]
    assert all(a.headers["content-length"] == b.headers["content-length"]
               for a, b in zip(before, during, strict=True))  # fmt: skip
    recorder = service.app.state.scoring.recorder
    assert recorder.flush(10)
    view = _view(service)
    assert view["shadow_version"] == 2
    ids = [p["prediction_id"] for a in during for p in a.json()["predictions"]]
    assert view["log"]["shadow_predictions"] == len(ids) > 50
    # The patients' real outcomes: the two versions compared on the same patients.
    labels = (va["num"].astype(int).to_numpy()[accepted] > 0).astype(int).tolist()
    with service.client("outcomes") as client:
        stored = client.post(
            "/v1/models/sites/feedback",
            json={
                "outcomes": [
                    {"prediction_id": i, "outcome": y} for i, y in zip(ids, labels, strict=True)
                ]
            },
        )
    assert stored.status_code == 200, stored.text
    shadow = _view(service)["shadow"]
    assert shadow["version"] == 2 and shadow["n"] == len(ids) and shadow["suppressed"] is False
    assert shadow["verdict"] in ("favours_shadow", "favours_production", "inconclusive")
    assert "AUROC" in shadow["sentence"]
    low, high = shadow["auroc_difference"]["ci95"]
    assert low <= shadow["auroc_difference"]["estimate"] <= high


class _Receiver:
    """A webhook receiver on a free loopback port: keeps each JSON body POSTed to it."""

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        received: list[dict] = []
        self.received = received
        self.arrived = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()
                outer.arrived.set()

            def log_message(self, *args: object) -> None:
                pass

        outer = self
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_alerts_reach_the_webhook_as_aggregates_only(sites_service, heart_sites):
    receiver = _Receiver()
    try:
        service = sites_service(monitor_webhook_url=receiver.url)
        swiss = heart_sites[heart_sites["dataset"] == "Switzerland"]
        _score(service, _records(swiss))
        assert service.app.state.scoring.recorder.flush(10, measure=True)
        assert receiver.arrived.wait(10)
        import time

        time.sleep(0.5)  # the rest of this window's alerts
    finally:
        receiver.close()
    alerts = receiver.received
    assert alerts and {a["model"] for a in alerts} == {"sites"}
    assert set(alerts[0]) == {
        "event", "model", "version", "window_start", "window_end", "n", "metric", "feature",
        "value", "threshold", "message",
    }  # fmt: skip
    assert len({(a["metric"], a["feature"]) for a in alerts}) == len(alerts)  # each once
    sent = json.dumps(alerts)
    for record in _records(swiss.head(20)):
        for value in record.values():
            if isinstance(value, str) and len(value) > 3:
                assert f'"{value}"' not in sent  # no level sent as a value of a record

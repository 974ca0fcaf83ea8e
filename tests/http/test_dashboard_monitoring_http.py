"""The dashboard's monitoring page: the live performance the JSON view reports, shown as
HTML for trainers, auditors and admins (a predictor is refused); fewer outcomes than
MEDSERVE_MONITOR_MIN_N read "suppressed", never a number; a model that has answered
nothing says so; an unknown model is the dashboard's 404 page."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from support.dashboard import sign_in

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PAGE = "/ui/models/heart/monitoring"


def monitoring_page(service, role: str, path: str = PAGE):
    with service.client(role=None) as client:
        assert sign_in(client, service.keys[role]).status_code == 303
        return client.get(path)


def predict_with_outcomes(service, heart_records, heart, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` heart records predicted over REST, their outcomes sent back: (labels, risks)."""
    labels = (heart["num"].astype(int).to_numpy()[:n] > 0).astype(int)
    with service.client() as client:
        answer = client.post("/v1/models/heart/predict", json={"records": heart_records[:n]})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    outcomes = [
        {"prediction_id": p["prediction_id"], "outcome": int(y)}
        for p, y in zip(predictions, labels, strict=True)
    ]
    with service.client("outcomes") as client:
        stored = client.post("/v1/models/heart/feedback", json={"outcomes": outcomes})
    assert stored.status_code == 200, stored.text
    return labels, np.array([p["risk"] for p in predictions])


def row_of(page, label: str) -> str:
    """The cells of the performance table's row named ``label``."""
    return re.search(rf'<th scope="row">{re.escape(label)}</th>(.*?)</tr>', page.text).group(1)


def test_the_page_shows_the_live_auroc_of_the_json_view(service, heart_records, heart):
    predict_with_outcomes(service, heart_records, heart, 30)
    page = monitoring_page(service, "trainer")
    with service.client("trainer") as client:
        view = client.get("/v1/models/heart/monitoring").json()
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    (performance,) = view["performance"]["versions"].values()
    auroc = performance["overall"]["auroc"]
    low, high = auroc["ci95"]
    assert f"{auroc['estimate']:.3f} ({low:.3f}–{high:.3f})" in row_of(page, "AUROC")
    assert "suppressed" not in row_of(page, "AUROC")
    assert f"Production: v{view['production_version']}" in page.text
    assert "Logged: 30 predictions, 30 outcomes" in page.text
    (window,) = view["drift"]["windows"]
    assert not window["suppressed"]
    assert "No predictions logged yet" not in page.text


def test_a_predictor_is_refused_and_an_auditor_admitted(service):
    refused = monitoring_page(service, "predictor")
    admitted = monitoring_page(service, "auditor")
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert "Monitoring of heart" not in refused.text
    assert admitted.status_code == 200 and "Monitoring of heart" in admitted.text


def test_fewer_outcomes_than_the_minimum_are_suppressed_without_numbers(
    service, heart_records, heart
):
    labels, risk = predict_with_outcomes(service, heart_records, heart, 5)
    assert 0 < labels.sum() < len(labels)  # an AUROC could be computed: it must not show
    page = monitoring_page(service, "admin")
    assert page.status_code == 200, page.text
    assert re.fullmatch(r'(<td class="num">suppressed</td>)+', row_of(page, "AUROC").strip())
    assert f"{roc_auc_score(labels, risk):.3f}" not in page.text
    assert "suppressed (fewer than 10)" in page.text  # the drift window of 5 predictions
    drift_row = re.search(r"<td>v1</td>\s*<td class=\"num\">([^<]*)</td>", page.text).group(1)
    assert drift_row == "–"


def test_a_model_without_predictions_says_so(service):
    page = monitoring_page(service, "trainer")
    assert page.status_code == 200, page.text
    assert "No predictions logged yet:" in page.text
    assert "No outcomes reported yet" in page.text


def test_an_unknown_model_is_the_dashboards_404_page(service):
    page = monitoring_page(service, "trainer", "/ui/models/nosuch/monitoring")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "No such model" in page.text and "nosuch" in page.text

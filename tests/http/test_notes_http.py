"""A model that reads notes, served: the note is a string field of the record, explained
by the sentences that moved the risk, and bounded in length (422 naming the limit)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medserve.config import Settings
from medserve.flows import TrainRequest, train_and_register
from medserve.http.app import create_app
from medserve.scoring.validation import MAX_NOTE_CHARS
from medserve.security.api_keys import ApiKeyStore
from medserve.storage import Registry
from support.notes import notes_table


def test_a_notes_model_is_served_explained_and_bounded(tmp_path, serve_app):
    settings = Settings(home=tmp_path / "home")
    table = notes_table(240, seed=4)
    outcome = train_and_register(
        settings,
        TrainRequest(
            data=table, source_name="notes", name="notes", target="event", text=["note"],
            family="text", deid=True, cv=3, validation="holdout",
        ),
    )  # fmt: skip
    assert outcome.version.family == "text"
    with Registry(settings) as registry:
        model = registry.load(outcome.version)

    app = create_app(settings)
    _, token = ApiKeyStore(app.state.registry.engine).create("predictor", name="notes test")
    served = serve_app(app, settings)
    record = {"age": 64, "note": "Vitals stable. Troponin elevated on arrival."}
    with served.client(role=None) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        url = f"/v1/models/{outcome.version.name}/predict"
        answer = client.post(url, json={"records": [record], "explain": True})
        too_long = client.post(
            url, json={"records": [{**record, "note": "x" * (MAX_NOTE_CHARS + 1)}]}
        )
        not_text = client.post(url, json={"records": [{**record, "note": 17}]})

    assert answer.status_code == 200, answer.text
    prediction = answer.json()["predictions"][0]
    np.testing.assert_allclose(prediction["risk"], model.predict_risk(pd.DataFrame([record]))[0])
    explanation = prediction["explanation"]
    assert set(explanation["contributions"]) == {"age", "note"}
    assert explanation["sentences"]["note"][0]["sentence"] == "Troponin elevated on arrival."
    summary = explanation["summary"]
    assert "Raised most by: note: 'Troponin elevated on arrival.'" in summary
    assert "raised risk" in summary

    assert too_long.status_code == 422
    assert too_long.headers["content-type"].startswith("application/problem+json")
    assert f"limit of {MAX_NOTE_CHARS:,}" in too_long.text and "field 'note'" in too_long.text
    assert not_text.status_code == 422 and "a note must be text" in not_text.text

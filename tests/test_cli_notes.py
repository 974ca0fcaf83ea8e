"""Notes through the command line and the Python API: `train --text` needs the notes
de-identified, the model card and lineage name the encoder, and `predict --explain` and
`Model.explain` name the sentence that moved the risk."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import medserve
from medserve.features.text import WEIGHTS_SHA256
from support.notes import notes_table
from test_cli import assert_clean_failure, run, run_json


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    return tmp_path / "home"


@pytest.fixture
def notes_csv(tmp_path):
    path = tmp_path / "notes.csv"
    notes_table(240, seed=5).to_csv(path, index=False)
    return path


TRAIN = ("--target", "event", "--model", "text", "--validation", "holdout", "--name", "notes")


def test_notes_are_refused_without_deid_in_one_line(home, notes_csv):
    result = run("train", notes_csv, "--text", "note", *TRAIN)
    assert_clean_failure(result, "--text-not-deidentified", code=2)
    assert "'note' is patient text and was not de-identified" in result.output
    assert not (home / "artifacts").exists() or not any((home / "artifacts").iterdir())


def test_train_with_notes_then_predict_names_the_sentence(home, notes_csv, tmp_path):
    trained = run_json("train", notes_csv, "--text", "note", "--deid", *TRAIN)
    assert trained["family"] == "text"
    shown = run_json("models", "show", "notes")
    assert shown["lineage"]["notes_encoder"]["weights_sha256"] == WEIGHTS_SHA256

    rows = tmp_path / "rows.csv"
    pd.DataFrame(
        {"age": [60], "note": ["Lives with spouse. Troponin elevated on arrival."], "event": [1]}
    ).to_csv(rows, index=False)
    out = tmp_path / "scored.csv"
    run_json("predict", "notes", rows, "-o", out, "--explain")
    summary = pd.read_csv(out)["explanation_summary"][0]
    assert "note: 'Troponin elevated on arrival.'" in summary


def test_the_python_api_trains_on_notes_and_explains_by_sentence(tmp_path):
    table = notes_table(240, seed=6)
    model = medserve.train(
        table, target="event", name="notes", model="text", text=["note"], deid=True,
        validation="holdout", home=tmp_path / "home",
    )  # fmt: skip
    why = model.explain(table.head(3).drop(columns=["event"]))
    sentences = why.sentences.iloc[0]["note"]
    assert {"sentence", "log_odds"} <= set(sentences[0])
    assert len(why.records()[0]["sentences"]["note"]) == len(sentences)


def test_notes_read_as_written_make_the_report_say_not_safe_harbor(home, notes_csv):
    trained = run_json("train", notes_csv, "--text", "note", "--text-not-deidentified", *TRAIN)
    assert any("NOT HIPAA Safe Harbor" in notice for notice in trained["notices"])
    report = json.loads(open(trained["report"]).read())
    assert report["data"]["notes_not_deidentified"] == ["note"]
    assert (
        "went into the model as written, not de-identified" in open(trained["report_html"]).read()
    )

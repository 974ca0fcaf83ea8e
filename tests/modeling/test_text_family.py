"""The text family: notes' embeddings beside the table, PCA fitted on training rows only,
a head chosen by CV, explanations whose note contribution is one column that adds up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medserve.data import infer_schema
from medserve.errors import ConfigError
from medserve.explain import Explainer
from medserve.features.embedding import NoteEmbedding
from medserve.features.text import WEIGHTS_SHA256, shared
from medserve.modeling import TrainOptions, train_model
from support.notes import notes_table


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return notes_table(300, seed=1)


def _schema(frame, *, notes=True):
    schema = infer_schema(frame, target="event")
    if not notes:
        return schema
    columns = [
        c.model_copy(update={"type": "text", "role": "feature"}) if c.name == "note" else c
        for c in schema.columns
    ]
    return schema.model_copy(update={"columns": columns})


def _options(family):
    return TrainOptions(family=family, validation="holdout", time_limit=None, seed=0)


@pytest.fixture(scope="module")
def trained(table):
    return train_model(table, _schema(table), _options("logistic,text"))


def test_notes_that_carry_signal_beat_the_table_alone(trained):
    rows = {r.family: r for r in trained.leaderboard}
    assert rows["text (linear head)"].auroc_mean > rows["logistic"].auroc_mean + 0.08
    test = trained.split
    held_out = roc_auc_score(test.y_test, trained.model.predict_risk(test.test))
    assert held_out > 0.6  # 60 held-out rows: the CV margin above is the claim


def test_the_encoder_is_in_the_lineage(trained):
    assert trained.model.info["notes_encoder"]["weights_sha256"] == WEIGHTS_SHA256


def test_pca_is_fitted_on_the_rows_it_is_fitted_on_only(table):
    part = table.iloc[:120]
    step = NoteEmbedding(components=8).fit(part[["note"]])
    expected = shared().encode(part["note"].tolist()).mean(axis=0)
    np.testing.assert_allclose(step.pca_.mean_, expected, atol=1e-5)
    assert step.transform(table[["note"]]).shape == (len(table), 9)  # 8 components + none


def test_a_missing_note_is_the_training_mean_with_its_indicator(table):
    step = NoteEmbedding(components=4).fit(table[["note"]])
    out = step.transform(pd.DataFrame({"note": [None, "  ", "Vitals stable."]}))
    np.testing.assert_array_equal(out[:2], [[0, 0, 0, 0, 1]] * 2)
    assert out[2, -1] == 0 and np.abs(out[2, :-1]).sum() > 0


def test_the_note_is_one_column_and_the_explanation_adds_up(trained):
    model = trained.model
    rows = trained.split.test.head(5)
    explanations = Explainer(model).explain_frame(rows)
    assert "note" in explanations.columns
    np.testing.assert_allclose(explanations.risk, model.predict_risk(rows), atol=1e-6)
    assert "a note's components summed as one column" in explanations.method


def test_the_sentence_that_moved_the_risk_is_named(trained):
    model = trained.model
    row = pd.DataFrame(
        {
            "age": [55],
            "note": ["Vitals stable. Troponin elevated on arrival. Lives with spouse."],
            "event": [1],
        }
    )
    explanations = Explainer(model).explain_frame(row)
    effects = explanations.sentences[0]["note"]
    assert effects[0].sentence == "Troponin elevated on arrival."
    assert effects[0].effect > 0.3
    record = explanations.record(0, "")
    assert record["sentences"]["note"][0]["sentence"] == "Troponin elevated on arrival."


def test_the_boosted_head_is_a_candidate_and_explains_exactly(table):
    result = train_model(table, _schema(table), _options("text"))
    labels = [r.family for r in result.leaderboard]
    assert labels == ["text (linear head)", "text (boosted head)"]
    booster = train_model(
        table, _schema(table), _options("text")
    )  # deterministic: same choice twice
    assert booster.model.info["candidate"] == result.model.info["candidate"]


def test_a_tabular_winner_does_not_ask_for_notes(table):
    shuffled = table.assign(note=table["note"].sample(frac=1, random_state=3).to_numpy())
    result = train_model(shuffled, _schema(shuffled), _options("logistic,text"))
    if result.model.family == "logistic":
        assert "note" not in result.model.schema.feature_names
        assert any("reads no notes" in n for n in result.notices)
        result.model.predict_risk(shuffled.drop(columns=["note"]).head(3))


def test_the_text_family_needs_a_text_feature(table):
    with pytest.raises(ConfigError, match="no text feature; name the notes column"):
        train_model(table, _schema(table, notes=False), _options("text"))


def test_notes_no_family_reads_are_refused(table):
    with pytest.raises(ConfigError, match="reads no notes"):
        train_model(table, _schema(table), _options("logistic"))


def test_auto_tries_the_text_family_only_where_there_are_notes(table):
    from medserve.modeling.families import auto_candidates

    assert "text" in auto_candidates(_schema(table))
    assert "text" not in auto_candidates(_schema(table, notes=False))


def test_the_reports_importance_does_not_rescore_every_sentence(trained, monkeypatch):
    from medserve.explain import explainer, report_section

    def refuse(*args, **kwargs):
        raise AssertionError("sentence effects computed for an aggregate")

    monkeypatch.setattr(explainer, "sentence_effects", refuse)
    section = report_section(trained.model, trained.split.test.head(20))
    assert section is not None

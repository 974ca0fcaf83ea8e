"""The onnx and transformers families: imported models restored from their weight
artifacts score as their runtime does, and explain themselves, approximately."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medserve.config import Settings
from medserve.errors import ConfigError, ExplanationUnavailable
from medserve.explain import Explainer
from medserve.flows.imports import import_model
from medserve.modeling.families import get_family
from medserve.storage import Registry
from support.imported_models import formula_risk, logistic_onnx, tiny_bert

ROWS = pd.DataFrame({"age": [25.0, 60.0, 85.0], "bmi": [21.0, 33.0, 40.0]})


def _onnx_model(tmp_path: Path, *, background: bool = True):
    settings = Settings(home=tmp_path / "home")
    schema = {"columns": {"age": "numeric", "bmi": "numeric"}, "output": {"name": "risk"}}
    if background:
        schema["background"] = [{"age": 30 + 5 * i, "bmi": 20 + i} for i in range(8)]
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    onnx_file = logistic_onnx(tmp_path / "model.onnx")
    import_model(settings, "bmi-risk", onnx=onnx_file, schema_file=tmp_path / "schema.json")
    with Registry(settings) as registry:
        return registry.load("bmi-risk"), onnx_file


def test_loaded_onnx_model_scores_as_onnxruntime_and_the_formula(tmp_path):
    import onnxruntime

    model, onnx_file = _onnx_model(tmp_path)
    risk = model.predict_risk(ROWS)
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    direct = session.run(["risk"], {"x": ROWS.to_numpy(np.float32)})[0][:, 0]
    np.testing.assert_allclose(risk, direct, rtol=1e-6)
    np.testing.assert_allclose(risk, formula_risk(ROWS.age, ROWS.bmi), atol=1e-6)


def test_imported_model_is_not_retrained(tmp_path):
    model, _ = _onnx_model(tmp_path)
    with pytest.raises(ConfigError, match="not retrained"):
        model.pipeline.fit(ROWS, [0, 1, 0])
    with pytest.raises(ConfigError, match="imported, not trained"):
        get_family("onnx").build(model.schema)


def test_onnx_explanations_are_permutation_shap_summing_to_the_log_odds(tmp_path):
    model, _ = _onnx_model(tmp_path)
    explanations = Explainer(model).explain_frame(ROWS)
    assert "approximate" in explanations.method and "permutation" in explanations.method
    np.testing.assert_allclose(explanations.risk, model.predict_risk(ROWS), atol=1e-5)
    # A logistic model's contributions are its coefficients times the distance from the
    # background mean: the older patient's age adds more log-odds.
    age = explanations.contributions[:, explanations.columns.index("age")]
    assert age[2] > age[1] > age[0]


def test_onnx_model_without_background_says_explanations_are_unavailable(tmp_path):
    model, _ = _onnx_model(tmp_path, background=False)
    with pytest.raises(ExplanationUnavailable, match="background"):
        Explainer(model)


def test_onnx_model_refuses_a_missing_value_naming_it(tmp_path):
    model, _ = _onnx_model(tmp_path)
    with pytest.raises(Exception, match="column 'bmi' row 2: missing"):
        model.predict_risk(pd.DataFrame({"age": [30.0, 40.0], "bmi": [22.0, None]}))


def test_transformers_note_is_explained_against_an_empty_note(tmp_path):
    settings = Settings(home=tmp_path / "home")
    (tmp_path / "schema.yaml").write_text("columns:\n  note: {type: text}\n")
    import_model(
        settings,
        "notes-risk",
        transformers=tiny_bert(tmp_path / "bert"),
        schema_file=tmp_path / "schema.yaml",
    )
    with Registry(settings) as registry:
        model = registry.load("notes-risk")
    frame = pd.DataFrame({"note": ["chest pain . troponin elevated .", "patient is stable ."]})
    explanations = Explainer(model).explain_frame(frame)
    assert "approximate" in explanations.method
    np.testing.assert_allclose(explanations.risk, model.predict_risk(frame), atol=1e-6)
    empty = model.predict_risk(pd.DataFrame({"note": [""]}))[0]
    np.testing.assert_allclose(explanations.base_value, np.log(empty / (1 - empty)), atol=1e-6)
    assert explanations.sentences is not None and "note" in explanations.sentences[0]

"""`import_model`: bring an ONNX file or a transformers folder, registered through the
registry (encrypted, lineage, audited), or refused with nothing left behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medserve.config import Settings
from medserve.errors import ConfigError, IntegrityError
from medserve.flows.evaluate import evaluate_stored
from medserve.flows.imports import import_model
from medserve.flows.predict import predict_file
from medserve.security.audit import AuditLog
from medserve.security.local_audit import AUDIT_PURPOSE
from medserve.storage import Registry
from medserve.storage.keystore import KeyStore
from support.imported_models import formula_risk, logistic_onnx, tiny_bert

BACKGROUND = [{"age": 30 + 5 * i, "bmi": 20 + i} for i in range(8)]


def _settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def _onnx_schema(tmp_path: Path, **extra: object) -> Path:
    content = {
        "columns": {"age": {"type": "numeric", "min": 0, "max": 120}, "bmi": "numeric"},
        "target": "outcome",
        "output": {"name": "risk"},
        "background": BACKGROUND,
        **extra,
    }
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(content))
    return path


def _artifacts(settings: Settings) -> list[Path]:
    folder = settings.artifacts_dir
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _versions(settings: Settings) -> list[str]:
    with Registry(settings) as registry:
        return [v.ref for v in registry.list()]


def test_onnx_import_registers_an_encrypted_audited_version_with_file_hashes(tmp_path):
    settings = _settings(tmp_path)
    onnx_file = logistic_onnx(tmp_path / "model.onnx")
    outcome = import_model(settings, "bmi-risk", onnx=onnx_file, schema_file=_onnx_schema(tmp_path))
    version = outcome.version
    assert version.family == "onnx"
    digest = __import__("hashlib").sha256(onnx_file.read_bytes()).hexdigest()
    assert version.lineage["imported_files"][0]["sha256"] == digest
    assert version.params["files"][0]["sha256"] == digest
    assert "onnxruntime" in version.lineage["runtime"]
    assert version.lineage["imported_by"] == version.created_by
    # The weights are stored as their own encrypted artifact, never in plain text.
    stored = _artifacts(settings)
    assert len(stored) == 2
    assert all(onnx_file.read_bytes()[:64] not in p.read_bytes() for p in stored)
    with Registry(settings) as registry:
        trail = AuditLog(registry.engine, KeyStore(settings).purpose_key(AUDIT_PURPOSE))
        routes = [entry["route"] for entry in trail.export()]
    assert "cli models import" in routes
    assert any("threshold is 0.5" in notice for notice in outcome.notices)


def test_second_import_of_a_name_is_a_candidate(tmp_path):
    settings = _settings(tmp_path)
    onnx_file = logistic_onnx(tmp_path / "model.onnx")
    schema = _onnx_schema(tmp_path)
    import_model(settings, "bmi-risk", onnx=onnx_file, schema_file=schema)
    second = import_model(settings, "bmi-risk", onnx=onnx_file, schema_file=schema)
    assert (second.version.version, second.version.stage) == (2, "candidate")


def test_mismatched_onnx_input_is_named_and_nothing_is_registered(tmp_path):
    settings = _settings(tmp_path)
    onnx_file = logistic_onnx(tmp_path / "model.onnx", width=2)
    schema = _onnx_schema(tmp_path, onnx={"input": "features"})
    with pytest.raises(ConfigError, match="'features'.*its inputs are: x"):
        import_model(settings, "bmi-risk", onnx=onnx_file, schema_file=schema)
    three = _onnx_schema(tmp_path, columns={"age": "numeric", "bmi": "numeric", "sbp": "numeric"})
    three_text = json.loads(three.read_text())
    three_text.pop("background")
    three.write_text(json.dumps(three_text))
    with pytest.raises(ConfigError, match=r"ONNX input 'x' .*\[N, 2\].*3 column"):
        import_model(settings, "bmi-risk", onnx=onnx_file, schema_file=three)
    assert _versions(settings) == [] and _artifacts(settings) == []


def test_unknown_output_names_the_outputs_available(tmp_path):
    settings = _settings(tmp_path)
    with pytest.raises(ConfigError, match="'probability' .*its outputs are: risk"):
        import_model(
            settings,
            "bmi-risk",
            onnx=logistic_onnx(tmp_path / "model.onnx"),
            schema_file=_onnx_schema(tmp_path, output={"name": "probability"}),
        )


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_missing_or_corrupt_onnx_registers_nothing(tmp_path, problem):
    settings = _settings(tmp_path)
    onnx_file = tmp_path / "model.onnx"
    if problem == "corrupt":
        onnx_file.write_bytes(b"\x08\x07 this is not a model" * 10)
    with pytest.raises(ConfigError, match="model.onnx"):
        import_model(settings, "bmi-risk", onnx=onnx_file, schema_file=_onnx_schema(tmp_path))
    assert _versions(settings) == [] and _artifacts(settings) == []


def test_failed_audit_undoes_the_import(tmp_path, monkeypatch):
    settings = _settings(tmp_path)
    import medserve.flows.imports as imports

    def broken(*args, **kwargs):
        raise OSError("audit trail unavailable")

    monkeypatch.setattr(imports, "record_local_action", broken)
    with pytest.raises(Exception, match="undone"):
        import_model(
            settings,
            "bmi-risk",
            onnx=logistic_onnx(tmp_path / "model.onnx"),
            schema_file=_onnx_schema(tmp_path),
        )
    assert _versions(settings) == [] and _artifacts(settings) == []


def test_imported_onnx_model_predicts_and_evaluates_through_the_flows(tmp_path):
    settings = _settings(tmp_path)
    import_model(
        settings,
        "bmi-risk",
        onnx=logistic_onnx(tmp_path / "model.onnx"),
        schema_file=_onnx_schema(tmp_path),
    )
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.uniform(20, 90, 60).round(), "bmi": rng.uniform(18, 45, 60)})
    frame["outcome"] = (rng.uniform(size=60) < formula_risk(frame.age, frame.bmi)).astype(int)
    out = tmp_path / "scored.csv"
    predicted = predict_file(settings, "bmi-risk", frame, out, explain=True)
    scored = pd.read_csv(out)
    assert predicted.n_rows == 60
    np.testing.assert_allclose(scored["risk"], formula_risk(frame.age, frame.bmi), atol=1e-6)
    assert "approximate" in json.loads(scored["explanation"][0])["method"]
    evaluated = evaluate_stored(settings, "bmi-risk", frame, channel="python")
    assert evaluated.n_rows == 60 and 0.5 < evaluated.metrics["auroc"].estimate <= 1.0


def test_transformers_import_predicts_as_the_network_does(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    settings = _settings(tmp_path)
    folder = tiny_bert(tmp_path / "bert")
    schema = tmp_path / "schema.yaml"
    schema.write_text(
        "columns:\n  note: {type: text}\ntarget: outcome\n"
        "transformers: {positive_label: POSITIVE}\nthreshold: 0.4\n"
    )
    outcome = import_model(settings, "notes-risk", transformers=folder, schema_file=schema)
    names = {f["name"] for f in outcome.version.lineage["imported_files"]}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= names
    assert "transformers" in outcome.version.lineage["runtime"]
    notes = ["chest pain . troponin elevated .", "patient is stable . no pain ."]
    with Registry(settings) as registry:
        model = registry.load("notes-risk")
    risk = model.predict_risk(pd.DataFrame({"note": notes}))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    network = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        logits = network(**tokenizer(notes, padding=True, return_tensors="pt")).logits
    np.testing.assert_allclose(risk, torch.softmax(logits.double(), 1)[:, 1].numpy(), atol=1e-6)
    frame = pd.DataFrame({"note": notes * 10, "outcome": [1, 0] * 10})
    evaluated = evaluate_stored(settings, "notes-risk", frame, channel="python")
    assert evaluated.n_rows == 20


def test_folder_of_pickled_weights_is_refused_with_the_reason(tmp_path):
    settings = _settings(tmp_path)
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    schema = tmp_path / "schema.yaml"
    schema.write_text("columns:\n  note: {type: text}\n")
    with pytest.raises(ConfigError, match="pytorch_model.bin.*pickled weights.*can run code"):
        import_model(settings, "notes-risk", transformers=folder, schema_file=schema)
    assert _versions(settings) == [] and _artifacts(settings) == []


def test_corrupt_safetensors_registers_nothing(tmp_path):
    settings = _settings(tmp_path)
    folder = tiny_bert(tmp_path / "bert")
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    schema = tmp_path / "schema.yaml"
    schema.write_text("columns:\n  note: {type: text}\n")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        import_model(settings, "notes-risk", transformers=folder, schema_file=schema)
    assert _versions(settings) == [] and _artifacts(settings) == []


def test_tampered_weight_artifact_is_refused_on_load(tmp_path):
    settings = _settings(tmp_path)
    outcome = import_model(
        settings,
        "bmi-risk",
        onnx=logistic_onnx(tmp_path / "model.onnx"),
        schema_file=_onnx_schema(tmp_path),
    )
    weights = settings.home / outcome.version.lineage["stored_files"][0]["artifact_path"]
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with Registry(settings) as registry, pytest.raises(IntegrityError):
        registry.load("bmi-risk")


def test_deleting_an_imported_version_removes_its_weight_artifacts(tmp_path):
    settings = _settings(tmp_path)
    import_model(
        settings,
        "bmi-risk",
        onnx=logistic_onnx(tmp_path / "model.onnx"),
        schema_file=_onnx_schema(tmp_path),
    )
    with Registry(settings) as registry:
        registry.delete("bmi-risk:1", force=True)
    assert _artifacts(settings) == []


def test_onnx_with_external_data_is_refused_at_import(tmp_path):
    import onnx

    settings = _settings(tmp_path)
    model = onnx.load(str(logistic_onnx(tmp_path / "inline.onnx")))
    onnx_file = tmp_path / "model.onnx"
    onnx.save_model(
        model, str(onnx_file), save_as_external_data=True, location="weights.bin",
        size_threshold=0,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="external data.*save_as_external_data=False") as caught:
        import_model(settings, "bmi-risk", onnx=onnx_file, schema_file=_onnx_schema(tmp_path))
    assert "\n" not in str(caught.value)
    assert _versions(settings) == [] and _artifacts(settings) == []


def _onnx_without_target(tmp_path: Path) -> Path:
    schema = _onnx_schema(tmp_path)
    content = json.loads(schema.read_text())
    content.pop("target")
    schema.write_text(json.dumps(content))
    return schema


def test_evaluating_a_model_imported_without_target_asks_for_it(tmp_path):
    settings = _settings(tmp_path)
    import_model(
        settings,
        "bmi-risk",
        onnx=logistic_onnx(tmp_path / "model.onnx"),
        schema_file=_onnx_without_target(tmp_path),
    )
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"age": rng.uniform(20, 90, 60).round(), "bmi": rng.uniform(18, 45, 60)})
    frame["died"] = (rng.uniform(size=60) < formula_risk(frame.age, frame.bmi)).astype(int)
    with pytest.raises(ConfigError, match="no outcome definition.*target.*positive") as caught:
        evaluate_stored(settings, "bmi-risk", frame, channel="python")
    assert "\n" not in str(caught.value)
    # Named on the command line, the outcome column is evaluated.
    evaluated = evaluate_stored(
        settings, "bmi-risk", frame, target="died", positive="1", channel="python"
    )
    assert evaluated.n_rows == 60


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"target": "age"}, "the target 'age' is also an input column"),
        (
            {"columns": {"age": {"type": "numeric", "min": 100, "max": 1}, "bmi": "numeric"}},
            "column 'age' has min 100 above max 1",
        ),
        (
            {"columns": [{"name": "age", "type": "numeric"}, {"name": "age", "type": "numeric"}]},
            "column 'age' is listed twice",
        ),
    ],
    ids=["target-is-an-input", "min-above-max", "repeated-column"],
)
def test_a_schema_file_that_cannot_be_right_is_refused(tmp_path, extra, message):
    settings = _settings(tmp_path)
    onnx_file = logistic_onnx(tmp_path / "model.onnx")
    with pytest.raises(ConfigError, match=message):
        import_model(
            settings, "bmi-risk", onnx=onnx_file, schema_file=_onnx_schema(tmp_path, **extra)
        )
    assert _versions(settings) == [] and _artifacts(settings) == []


def test_a_transformers_folder_with_a_symbolic_link_is_refused(tmp_path):
    settings = _settings(tmp_path)
    folder = tiny_bert(tmp_path / "bert")
    outside = tmp_path / "outside.txt"
    outside.write_text("not the model's")
    (folder / "notes.txt").symlink_to(outside)
    schema = tmp_path / "schema.yaml"
    schema.write_text("columns:\n  note: {type: text}\ntransformers: {positive_label: POSITIVE}\n")
    with pytest.raises(ConfigError, match=r"holds symbolic links \(notes.txt\)"):
        import_model(settings, "notes-risk", transformers=folder, schema_file=schema)
    assert _versions(settings) == [] and _artifacts(settings) == []

"""`medserve keys rotate-master`: a new master key, every artifact still loads."""

from __future__ import annotations

import json

import numpy as np
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from medserve.cli import app
from medserve.config import Settings
from medserve.core.crypto import parse
from medserve.storage import Registry


def test_rotate_master_rewraps_artifacts_and_models_still_load(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MEDSERVE_HOME", str(home))
    monkeypatch.delenv("MEDSERVE_MASTER_KEY", raising=False)
    settings = Settings(home=home)
    X = np.arange(40.0).reshape(-1, 1)
    model = LogisticRegression().fit(X, (X[:, 0] > 20).astype(int))
    with Registry(settings) as registry:
        version = registry.register(
            "tiny",
            model,
            family="logistic",
            schema={},
            metrics={},
            threshold=0.5,
            params={},
            lineage={},
            data_sha256="0" * 64,
        )
    artifact = home / version.artifact_path
    key_before = parse(artifact.read_bytes()).key_id
    result = CliRunner().invoke(app, ["keys", "rotate-master", "--retire-old", "--json"])
    assert result.exit_code == 0, result.output
    rotation = json.loads(result.stdout)
    assert rotation["rewrapped"] == 1 and rotation["old_key_id"] == key_before
    assert parse(artifact.read_bytes()).key_id == rotation["new_key_id"] != key_before
    with Registry(settings) as registry:
        loaded = registry.load(registry.get("tiny"))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_rotate_master_with_a_single_environment_key_explains(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MEDSERVE_MASTER_KEY", "A" * 43 + "=")
    result = CliRunner().invoke(app, ["keys", "rotate-master"])
    assert result.exit_code != 0
    assert "MEDSERVE_MASTER_KEY" in result.output and "Traceback" not in result.output

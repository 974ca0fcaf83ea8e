"""`medserve schema` previews what `train` will do: the same --missing, --ignore and
--deid, the same inference, and nothing written to the home."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from deid.synthetic import make_identified
from medserve.cli import app
from medserve.config import Settings
from medserve.flows import TrainRequest, parse_missing
from medserve.flows.prepare import prepare

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDSERVE_MASTER_KEY", raising=False)
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    return tmp_path / "home"


def schema_json(*args) -> dict:
    result = runner.invoke(app, ["schema", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_schema_applies_missing_and_ignore_as_train_does(home, heart_csv):
    options = ("--target", "num", "--positive-if", ">0", "--missing", "chol=0")
    shown = schema_json(heart_csv, *options, "--ignore", "dataset")
    columns = {c["name"]: c for c in shown["columns"]}
    assert columns["dataset"]["role"] == "ignore"
    assert columns["chol"]["missing_tokens"] == ["0"]
    request = TrainRequest(
        data=heart_csv, target="num", positive_if=">0", missing=parse_missing(["chol=0"]),
        ignore=["dataset"],
    )  # fmt: skip
    trained = prepare(Settings(home=home), request).schema
    assert shown == trained.model_dump(mode="json")


@pytest.fixture
def labelled_csv(tmp_path):
    frame = make_identified(rows=200, seed=7).frame.copy()
    rng = np.random.default_rng(3)
    frame["readmitted"] = (rng.random(len(frame)) < 0.4).astype(int)
    path = tmp_path / "admissions.csv"
    frame.to_csv(path, index=False)
    return path


def test_schema_deid_previews_train_deid_and_writes_nothing_to_the_home(home, labelled_csv):
    shown = schema_json(labelled_csv, "--target", "readmitted", "--deid")
    assert not home.exists(), sorted(p.name for p in home.rglob("*"))
    assert shown["deidentification"]["actions"], shown["deidentification"]
    assert any(n.startswith("de-identified before training") for n in shown["notices"])
    request = TrainRequest(data=labelled_csv, target="readmitted", deid=True)
    trained = prepare(Settings(home=home), request).schema.model_dump(mode="json")
    # All of train's schema but the id of a key the preview did not use.
    assert shown == {**trained, "deidentification": {**trained["deidentification"], "key_id": None}}

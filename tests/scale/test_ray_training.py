"""`medserve train --engine ray`: the search's fits as Ray tasks choose the model, and write
the leaderboard, that the local engine does for the same seed."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medserve.cli import app
from medserve.errors import ConfigError
from medserve.modeling import TrainOptions, train_model
from medserve.modeling.search import Candidate, FoldFit, SearchData, fit_fold
from medserve.scale.training import RayTasks

OPTIONS = TrainOptions(family="logistic,lightgbm", cv=3)
runner = CliRunner()


def leaderboard(rows) -> list[dict]:
    """The leaderboard as the report keeps it, bar the fitting times."""
    return [{k: v for k, v in row.items() if k != "fit_seconds"} for row in rows]


@pytest.mark.ray
def test_training_on_ray_chooses_what_the_local_engine_chooses(ray_local, heart, heart_schema):
    local = train_model(heart, heart_schema, OPTIONS)
    on_ray = train_model(heart, heart_schema, OPTIONS, parallel=RayTasks(ray_local))
    assert leaderboard(r.to_dict() for r in on_ray.leaderboard) == leaderboard(
        r.to_dict() for r in local.leaderboard
    )
    assert len(on_ray.leaderboard) > 2  # the families and the capacities were tried
    assert on_ray.model.info["candidate"] == local.model.info["candidate"]
    assert on_ray.model.threshold == local.model.threshold
    assert np.array_equal(on_ray.model.predict_risk(heart), local.model.predict_risk(heart))


@pytest.mark.ray
def test_the_cli_trains_on_ray_the_model_it_trains_locally(
    ray_local, heart_csv, tmp_path, monkeypatch
):
    """The fixture's Ray is already running: `--engine ray` joins it."""
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    args = ["train", str(heart_csv), "--target", "num", "--positive-if", ">0"]
    args += ["--model", "logistic,lightgbm", "--cv", "3", "--name", "heart", "--json"]
    trained = {}
    for engine in ("local", "ray"):
        result = runner.invoke(app, [*args, "--engine", engine])
        assert result.exit_code == 0, result.output
        trained[engine] = json.loads(result.stdout)
    local, on_ray = trained["local"], trained["ray"]
    assert on_ray["version"] == 2 and on_ray["family"] == local["family"]
    assert on_ray["metrics"] == local["metrics"]
    assert on_ray["threshold"] == local["threshold"]
    reports = {k: json.loads(Path(v["report"]).read_text()) for k, v in trained.items()}
    assert leaderboard(reports["ray"]["model"]["leaderboard"]) == leaderboard(
        reports["local"]["model"]["leaderboard"]
    )
    assert reports["ray"]["notices"] == reports["local"]["notices"]  # warnings included


@pytest.mark.ray
def test_a_warning_raised_in_a_task_is_raised_again_where_training_runs(ray_local):
    with pytest.warns(UserWarning, match="lbfgs failed to converge"):
        RayTasks(ray_local).map(warnings.warn, "lbfgs failed to converge", [UserWarning])


@pytest.mark.ray
def test_an_error_in_a_task_comes_back_as_itself_not_as_rays(ray_local, heart, heart_schema):
    """The text family on a table without notes: the ConfigError the local engine raises."""
    X = heart_schema.prepare(heart)
    y = heart_schema.outcome.binarise(heart["num"])
    data = SearchData(heart_schema, X, y, [(np.arange(0, 600), np.arange(600, len(y)))], 0)
    task = FoldFit(Candidate("text", "text"), 0)
    with pytest.raises(ConfigError, match="reads notes") as local:
        fit_fold(data, task)
    with pytest.raises(ConfigError, match="reads notes") as on_ray:
        RayTasks(ray_local).map(fit_fold, data, [task])
    assert type(on_ray.value) is type(local.value)
    assert str(on_ray.value) == str(local.value)


def test_an_unknown_engine_is_one_clear_line(heart_csv, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["train", str(heart_csv), "--target", "num", "--engine", "spark"])
    assert result.exit_code != 0
    assert "unknown engine 'spark' (--engine); choose local or ray" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output

"""A database writer who points `heart` at pima's artifact, or changes heart's threshold,
gets heart refused, by the service and by `medserve predict`; the other models still serve.
(Here rather than in tests/storage for the session's trained models in conftest.py.)"""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from medserve.cli import app as cli
from medserve.config import Settings
from medserve.http.app import create_app
from medserve.storage import Registry
from support.servers import copy_models, json_records

Attack = Callable[[Registry], None]


def point_heart_at_pimas_artifact(registry: Registry) -> None:
    pima = registry.get("pima")
    _update_heart(
        registry,
        artifact_id=pima.artifact_id,
        artifact_path=pima.artifact_path,
        artifact_sha256=pima.artifact_sha256,
    )


def raise_hearts_threshold(registry: Registry) -> None:
    _update_heart(registry, threshold=0.999)


def _update_heart(registry: Registry, **values: object) -> None:
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    with registry.engine.begin() as connection:
        connection.execute(
            text(f"UPDATE model_versions SET {assignments} WHERE name = 'heart'"), values
        )


ATTACKS = pytest.mark.parametrize(
    "attack", [point_heart_at_pimas_artifact, raise_hearts_threshold], ids=["swap", "threshold"]
)


def tampered_home(seed: Settings, settings: Settings, attack: Attack) -> Settings:
    copy_models(seed, settings)
    with Registry(settings) as registry:
        attack(registry)
    return settings


@pytest.fixture(scope="module")
def pima_records(pima_csv: Path) -> list[dict]:
    frame = pd.read_csv(pima_csv, dtype=str, keep_default_na=False, na_values=[""])
    return json_records(frame.drop(columns=["Outcome"]))


@ATTACKS
def test_the_service_refuses_the_tampered_model_and_serves_the_others(
    tmp_path: Path,
    seed_home: Settings,
    database_url: str | None,
    serve_app,
    heart_records: list[dict],
    pima_records: list[dict],
    attack: Attack,
) -> None:
    settings = tampered_home(
        seed_home, Settings(home=tmp_path / "home", database_url=database_url), attack
    )
    service = serve_app(create_app(settings), settings)

    with service.client("predictor") as client:
        refused = client.post("/v1/models/heart/predict", json={"records": heart_records[:3]})
        served = client.post("/v1/models/pima/predict", json={"records": pima_records[:3]})

    assert refused.status_code == 503, refused.text
    assert "model heart:1 was refused" in refused.json()["detail"]
    assert "predictions" not in refused.json()
    assert served.status_code == 200, served.text
    assert served.json()["model"] == "pima" and len(served.json()["predictions"]) == 3


@ATTACKS
def test_cli_predict_refuses_the_tampered_model(
    tmp_path: Path,
    seed_home: Settings,
    heart_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
    attack: Attack,
) -> None:
    settings = tampered_home(seed_home, Settings(home=tmp_path / "home"), attack)
    monkeypatch.setenv("MEDSERVE_HOME", str(settings.home))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    scores = tmp_path / "scores.csv"

    result = CliRunner().invoke(cli, ["predict", "heart", str(heart_csv), "-o", str(scores)])

    assert result.exit_code == 4, result.output
    assert "model heart:1 was refused" in result.output and "Traceback" not in result.output
    assert not scores.exists()


def test_cli_predict_writes_a_private_file(
    tmp_path: Path, seed_home: Settings, pima_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path / "home")
    copy_models(seed_home, settings)
    monkeypatch.setenv("MEDSERVE_HOME", str(settings.home))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    scores = tmp_path / "scores.csv"

    result = CliRunner().invoke(cli, ["predict", "pima", str(pima_csv), "-o", str(scores)])

    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(scores.stat().st_mode) == 0o600
    assert len(pd.read_csv(scores)) == len(pd.read_csv(pima_csv))

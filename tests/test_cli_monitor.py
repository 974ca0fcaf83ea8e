"""`medserve monitor`, `medserve models shadow` and `medserve predictions purge`: the
monitoring view for a person, from prediction-log rows written as the server writes them
(the heart model's own risks for real patients, with their real outcomes)."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import medserve
from medserve.config import Settings
from medserve.data import Schema
from medserve.monitoring.profile import ReferenceProfile
from medserve.monitoring.windows import batch_counts
from medserve.security.audit import export_records
from medserve.storage import Registry
from medserve.storage.drift_counts import DriftCounts
from medserve.storage.predictions import LoggedPrediction, PredictionLog, ReportedOutcome
from medserve.storage.profiles import ProfileStore
from test_cli import assert_clean_failure, run, run_json, train_heart_args


@pytest.fixture(scope="module")
def trained_twice(tmp_path_factory, heart_csv):
    """heart:1 in production and heart:2 a candidate, trained once for the module."""
    home = tmp_path_factory.mktemp("monitor") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDSERVE_HOME", str(home))
        patch.delenv("MEDSERVE_DATABASE_URL", raising=False)
        run_json(*train_heart_args(heart_csv))
        run_json(*train_heart_args(heart_csv))
    return home


@pytest.fixture
def home(tmp_path, monkeypatch, trained_twice):
    copy = tmp_path / "home"
    shutil.copytree(trained_twice, copy)
    monkeypatch.setenv("MEDSERVE_HOME", str(copy))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    return copy


@pytest.fixture(scope="module")
def patients(heart_csv) -> pd.DataFrame:
    heart = pd.read_csv(heart_csv)
    return heart[heart.dataset == "Cleveland"].head(80).reset_index(drop=True)


def log_rows(
    home,
    patients: pd.DataFrame,
    *,
    version: int = 1,
    shadow_version: int | None = None,
    made_at: datetime | None = None,
    with_outcomes: bool = True,
) -> list[str]:
    """Log ``version``'s risks for ``patients`` (and ``shadow_version``'s under the same
    ids) and, optionally, their observed outcomes; the prediction ids."""
    settings = Settings(home=home)
    records = patients.drop(columns=["num"])
    made_at = made_at or datetime.now(UTC) - timedelta(hours=1)
    ids = [uuid.uuid4().hex for _ in range(len(patients))]
    rows = []
    for scored, is_shadow in ((version, False), (shadow_version, True)):
        if scored is None:
            continue
        risks = medserve.load(f"heart:{scored}", settings=settings).predict_risk(records)
        rows += [
            LoggedPrediction(i, "heart", scored, is_shadow, made_at, "rest", float(r), 0, "low")
            for i, r in zip(ids, risks, strict=True)
        ]
    outcomes = (patients["num"] > 0).astype(int)
    with Registry(settings) as registry:
        log = PredictionLog(registry.engine)
        log.write(rows)
        if with_outcomes:
            log.add_outcomes(
                "heart", [ReportedOutcome(i, int(y)) for i, y in zip(ids, outcomes, strict=True)]
            )
    return ids


def served_risks(home, patients: pd.DataFrame) -> list[float]:
    settings = Settings(home=home)
    return list(
        medserve.load("heart:1", settings=settings).predict_risk(patients.drop(columns=["num"]))
    )


def test_live_auroc_is_sklearns_on_the_logged_rows(home, patients):
    log_rows(home, patients)
    view = run_json("monitor", "heart")
    overall = view["performance"]["versions"]["1"]["overall"]
    y = (patients["num"] > 0).astype(int)
    assert y.nunique() == 2 and len(y) >= 30
    assert overall["suppressed"] is False and overall["n"] == len(patients)
    assert overall["events"] == int(y.sum())
    assert overall["auroc"]["estimate"] == pytest.approx(
        roc_auc_score(y, served_risks(home, patients)), abs=1e-12
    )
    assert view["production_version"] == 1 and view["log"]["outcomes"] == len(patients)


def test_the_table_names_production_and_suppresses_few_outcomes(home, patients):
    log_rows(home, patients.head(6))
    result = run("monitor", "heart")
    assert result.exit_code == 0, result.output
    assert "production v1" in result.stdout
    assert "6 outcomes" in result.stdout
    (auroc_line,) = [line for line in result.stdout.splitlines() if "AUROC  " in line]
    assert "suppressed" in auroc_line
    assert not any(ch.isdigit() for ch in auroc_line), auroc_line
    assert "fewer than 10" in result.stdout


def test_drift_windows_are_listed_newest_first_with_alerts_and_suppression(
    home, patients, heart_csv
):
    settings = Settings(home=home)
    heart = pd.read_csv(heart_csv)
    shifted = heart[heart.dataset == "Switzerland"].drop(columns=["num"]).head(100)
    with Registry(settings) as registry:
        version = registry.get("heart:1")
        profile = ReferenceProfile.from_dict(ProfileStore(registry.engine).get("heart", 1))
        schema = Schema.model_validate(version.schema)
        model = medserve.load("heart:1", settings=settings)
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        windows = {}
        for hours_ago, frame in ((1, shifted), (2, shifted.head(4))):
            records = frame.to_dict("records")
            counts = batch_counts(profile, schema, records, list(model.predict_risk(frame)))
            windows[("heart", 1, now - timedelta(hours=hours_ago))] = counts
        DriftCounts(registry.engine).save("test", windows)
    result = run("monitor", "heart")
    assert result.exit_code == 0, result.output
    assert "suppressed (fewer than 10)" in result.stdout
    assert "Latest window's alerts" in result.stdout
    view = run_json("monitor", "heart")
    newest, older = view["drift"]["windows"]
    assert newest["start"] > older["start"] and older["suppressed"] and newest["alerts"]
    assert all(alert["message"] in result.stdout for alert in newest["alerts"])


def test_shadow_a_candidate_then_stop(home, patients):
    made = run("models", "shadow", "heart:2")
    assert made.exit_code == 0, made.output
    assert "never returned" in made.stdout and "medserve monitor heart" in made.stdout
    log_rows(home, patients, shadow_version=2)
    shown = run("monitor", "heart")
    assert shown.exit_code == 0, shown.output
    assert "shadow v2" in shown.stdout
    assert "AUROC difference (shadow − production)" in shown.stdout
    view = run_json("monitor", "heart")
    assert view["shadow_version"] == 2 and view["shadow"]["n"] == len(patients)
    assert view["log"]["shadow_predictions"] == len(patients)

    refused = run("models", "shadow", "heart:1")
    assert_clean_failure(refused, "heart:1 is the production version")

    stopped = run("models", "shadow", "heart", "--stop")
    assert stopped.exit_code == 0, stopped.output
    assert "heart:2 is no longer scored in shadow" in stopped.stdout
    assert run_json("monitor", "heart")["shadow_version"] is None
    again = run("models", "shadow", "heart", "--stop")
    assert again.exit_code == 0 and "had no shadow version" in again.stdout
    unnamed = run("models", "shadow", "heart")
    assert_clean_failure(unnamed, "name the candidate's version", code=2)
    with Registry(Settings(home=home)) as registry:
        records = export_records(registry.engine)
        routes = [(r["route"], r["model_version"]) for r in records if r["method"] == "CLI"]
    assert routes == [("cli models shadow", 2), ("cli models shadow stop", 2)]


def test_purge_removes_what_is_older_than_the_cutoff(home, patients):
    old = datetime.now(UTC) - timedelta(days=40)
    log_rows(home, patients.head(20), made_at=old)
    log_rows(home, patients.tail(15), made_at=old, with_outcomes=False)
    log_rows(home, patients.head(12))

    purged = run_json("predictions", "purge", "--older-than-days", "30")
    assert (purged["predictions"], purged["outcomes"]) == (35, 20)
    assert run_json("monitor", "heart")["log"] == {
        "predictions": 12,
        "shadow_predictions": 0,
        "outcomes": 12,
    }

    result = run("predictions", "purge", "--older-than-days", "0")
    assert result.exit_code == 0, result.output
    assert "removed 12 predictions, 12 outcomes" in result.stdout
    assert run_json("monitor", "heart")["log"]["predictions"] == 0


@pytest.mark.parametrize("days", ["-1", "99999999"])
def test_purge_refuses_an_age_out_of_range(home, days):
    result = run("predictions", "purge", "--older-than-days", days)
    assert_clean_failure(result, "--older-than-days must be 0 to 36500 days", code=2)


def test_an_unknown_model_is_one_line_and_exit_code_3(home):
    result = run("monitor", "nosuch")
    assert_clean_failure(result, "no model named 'nosuch'", code=3)


def test_after_a_shadow_stops_the_view_compares_the_last_one_alone(home, patients):
    older = datetime.now(UTC) - timedelta(days=3)
    log_rows(home, patients, shadow_version=2, made_at=older)
    # A later shadow, version 3 (since archived), on other patients: it alone is compared.
    later_at = older + timedelta(days=1)
    later = log_rows(home, patients.head(40), made_at=later_at)
    with Registry(Settings(home=home)) as registry:
        PredictionLog(registry.engine).write(
            [
                LoggedPrediction(i, "heart", 3, True, later_at, "rest", 0.5, 1, "x")
                for i in later
            ]
        )
    shadow = run_json("monitor", "heart")["shadow"]
    assert shadow["version"] == 3 and shadow["n"] == 40


def test_outcomes_from_a_hospitals_export_are_stored_all_or_none(home, patients, tmp_path):
    ids = log_rows(home, patients.head(20), with_outcomes=False)
    outcomes = (patients.head(20)["num"] > 0).astype(int).tolist()
    export = tmp_path / "outcomes.csv"
    pd.DataFrame({"prediction_id": ids, "outcome": outcomes}).to_csv(export, index=False)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"prediction_id": [ids[0], "f" * 32], "outcome": [1, 0]}).to_csv(bad, index=False)
    refused = run("predictions", "outcomes", "heart", "--data", bad)
    assert_clean_failure(refused, "logged no prediction with id", code=3)
    assert run_json("monitor", "heart")["log"]["outcomes"] == 0  # nothing of it stored
    stored = run_json("predictions", "outcomes", "heart", "--data", export)
    assert stored["stored"] == 20 and stored["prediction_ids"] == ids
    assert run_json("monitor", "heart")["log"]["outcomes"] == 20
    again = run("predictions", "outcomes", "heart", "--data", export)
    assert_clean_failure(again, "has an outcome already", code=1)
    with Registry(Settings(home=home)) as registry:
        records = list(export_records(registry.engine))
    assert [r["n_records"] for r in records if r["route"] == "cli feedback"] == [2, 20, 20]


def test_an_outcome_that_is_not_0_or_1_names_its_row(home, patients, tmp_path):
    ids = log_rows(home, patients.head(2), with_outcomes=False)
    export = tmp_path / "outcomes.csv"
    pd.DataFrame({"prediction_id": ids, "outcome": ["1", "yes"]}).to_csv(export, index=False)
    result = run("predictions", "outcomes", "heart", "--data", export)
    assert_clean_failure(result, "row 2: outcome 'yes' is not 0 or 1", code=2)

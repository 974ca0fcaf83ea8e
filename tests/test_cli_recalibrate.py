"""`medserve recalibrate`: a heart model developed at Cleveland and Hungary, updated to VA
Long Beach's outcomes by logistic recalibration, registered as a new candidate whose
lineage names its parent; the model itself is not refitted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.special import expit, logit

import medserve
from medserve.config import Settings
from medserve.security.audit import export_records
from medserve.storage import Registry
from test_cli import assert_clean_failure, run, run_json


@pytest.fixture(scope="module")
def sites(tmp_path_factory, heart_csv):
    folder = tmp_path_factory.mktemp("sites")
    heart = pd.read_csv(heart_csv)
    heart[heart.dataset.isin(["Cleveland", "Hungary"])].to_csv(folder / "dev.csv", index=False)
    heart[heart.dataset == "VA Long Beach"].to_csv(folder / "va.csv", index=False)
    heart[heart.dataset == "VA Long Beach"].head(30).to_csv(folder / "few.csv", index=False)
    return folder


@pytest.fixture
def home(tmp_path, monkeypatch, sites):
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    run_json(
        "train", sites / "dev.csv", "--target", "num", "--positive-if", ">0", "--name", "heart",
        "--model", "logistic", "--cv", "3", "--ignore", "dataset", "--ignore", "id",
    )  # fmt: skip
    return tmp_path / "home"


def test_recalibration_on_va_brings_observed_over_expected_to_one(home, sites):
    result = run_json("recalibrate", "heart", "--data", sites / "va.csv")
    assert (result["parent"], result["version"], result["stage"]) == (
        "heart:1",
        "heart:2",
        "candidate",
    )
    before, after = result["before"]["observed_expected"], result["after"]["observed_expected"]
    assert before > 1.3  # VA has far more disease than the model expects
    assert abs(after - 1) < abs(before - 1) / 4
    slope_before = result["before"]["calibration_slope"]["estimate"]
    assert abs(result["after"]["calibration_slope"]["estimate"] - 1) < abs(slope_before - 1)
    settings = Settings(home=home)
    with Registry(settings) as registry:
        version = registry.get("heart:2")
        assert version.lineage["parent"] == "heart:1"
        assert version.lineage["recalibration"]["method"] == result["method"]
        records = list(export_records(registry.engine))
    assert records[-1]["route"] == "cli recalibrate" and records[-1]["n_records"] == 200


def test_the_new_version_is_the_parent_mapped_by_the_update_not_refitted(home, sites, heart_csv):
    result = run_json("recalibrate", "heart", "--data", sites / "va.csv", "--method", "slope")
    rows = pd.read_csv(heart_csv).drop(columns=["num"]).head(100)
    settings = Settings(home=home)
    parent = medserve.load("heart:1", settings=settings).predict_risk(rows)
    child = medserve.load("heart:2", settings=settings).predict_risk(rows)
    expected = expit(result["intercept"] + result["slope"] * logit(parent))
    np.testing.assert_allclose(child, expected, rtol=0, atol=1e-9)
    # A monotone map: the same patients come first.
    assert (np.argsort(parent, kind="stable") == np.argsort(child, kind="stable")).all()


def test_intercept_only_keeps_the_slope(home, sites):
    result = run_json("recalibrate", "heart", "--data", sites / "va.csv", "--method", "intercept")
    assert result["method"] == "intercept" and result["slope"] == 1.0


def test_too_few_events_is_refused_and_nothing_is_registered(home, sites):
    assert_clean_failure(
        run("recalibrate", "heart", "--data", sites / "few.csv"), "at least 10", code=2
    )
    with Registry(Settings(home=home)) as registry:
        assert [v.version for v in registry.versions("heart")] == [1]


def test_data_without_the_outcome_says_which_option_names_it(home, sites, tmp_path):
    pd.read_csv(sites / "va.csv").drop(columns=["num"]).to_csv(tmp_path / "x.csv", index=False)
    assert_clean_failure(run("recalibrate", "heart", "--data", tmp_path / "x.csv"), "--target")


def test_the_python_api_recalibrates_as_the_cli_does(home, sites):
    model = medserve.load("heart", home=home)
    va = pd.read_csv(sites / "va.csv")
    local = model.recalibrate(va, method="intercept")
    assert local.ref == "heart:2" and local.lineage["parent"] == "heart:1"
    observed = (va["num"] > 0).mean()
    assert abs(local.predict_risk(va.drop(columns=["num"])).mean() - observed) < abs(
        model.predict_risk(va.drop(columns=["num"])).mean() - observed
    )
    with Registry(Settings(home=home)) as registry:
        records = list(export_records(registry.engine))
    (record,) = [r for r in records if r["route"] == "python recalibrate"]
    assert (record["model"], record["model_version"], record["n_records"]) == ("heart", 1, 200)


def test_the_parents_fhir_bindings_carry_over(home, sites, tmp_path):
    binding = run_json("fhir", "bind", "heart")["binding"]
    path = tmp_path / "heart.fhir.yaml"
    path.write_text(yaml.safe_dump(binding))
    run_json("fhir", "bind", "heart", "--file", path)
    run_json("recalibrate", "heart", "--data", sites / "va.csv")
    shown = run_json("fhir", "bind", "heart:2")
    assert shown["stored"] is True and shown["binding"] == binding


def test_the_parents_reference_profile_carries_over_with_its_risks_mapped(home, sites):
    from medserve.monitoring.profile import ReferenceProfile
    from medserve.storage.profiles import ProfileStore

    result = run_json("recalibrate", "heart", "--data", sites / "va.csv")
    with Registry(Settings(home=home)) as registry:
        store = ProfileStore(registry.engine)
        parent = ReferenceProfile.from_dict(store.get("heart", 1))
        child = ReferenceProfile.from_dict(store.get("heart", 2))
    assert child.features == parent.features  # the same training data
    assert child.risk_fractions == parent.risk_fractions
    intercept, slope = result["intercept"], result["slope"]
    expected = expit(intercept + slope * logit(np.array(parent.risk_edges)))
    assert np.allclose(child.risk_edges, expected, rtol=1e-6)


def test_refit_trains_the_same_family_on_the_local_data_with_its_parent(home, sites):
    result = run_json("recalibrate", "heart", "--data", sites / "va.csv", "--refit")
    assert result["ref"] == "heart:2" and result["stage"] == "candidate"
    with Registry(Settings(home=home)) as registry:
        parent, child = registry.get("heart:1"), registry.get("heart:2")
    assert child.family == parent.family == "logistic"
    assert child.lineage["parent"] == "heart:1" and child.lineage["refit"] is True
    assert child.data_sha256 != parent.data_sha256  # trained on VA, not the development sites
    assert child.schema["columns"] and {
        c["name"] for c in child.schema["columns"] if c["role"] == "feature"
    } == {c["name"] for c in parent.schema["columns"] if c["role"] == "feature"}
    assert "recalibration" not in child.lineage


def test_without_refit_nothing_is_refitted(home, sites):
    result = run_json("recalibrate", "heart", "--data", sites / "va.csv")
    with Registry(Settings(home=home)) as registry:
        child = registry.get(result["version"])
    assert "refit" not in child.lineage and child.lineage["recalibration"]


def test_the_python_api_refits_when_asked(home, sites):
    model = medserve.load("heart", home=home)
    local = model.recalibrate(pd.read_csv(sites / "va.csv"), refit=True)
    assert local.ref == "heart:2" and local.lineage["parent"] == "heart:1"
    assert local.lineage["refit"] is True

"""`train --deid`: identifiers are gone before anything is stored — registry database,
reports, the encrypted model (its background sample included) — and the stored schema
and report say that de-identification ran and with which policy."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from deid.test_cli_deid import leaked
from medserve.cli import app
from medserve.config import Settings
from medserve.deid import deidentify, parse_policy
from medserve.deid.training import schema_record
from medserve.storage import Registry

runner = CliRunner()


@pytest.fixture
def labelled_csv(tmp_path: Path, identified) -> Path:
    """The identified table with an outcome that depends on glucose (and some noise)."""
    frame = identified.frame.copy()
    rng = np.random.default_rng(3)
    risk = 1 / (1 + np.exp(-(frame["glucose"].astype(float) - 150) / 25))
    frame["readmitted"] = (rng.random(len(frame)) < risk).astype(int)
    path = tmp_path / "admissions.csv"
    frame.to_csv(path, index=False)
    return path


def test_train_deid_stores_no_identifier_and_records_the_policy(
    tmp_path, home, identified, labelled_csv
):
    policy = tmp_path / "policy.yaml"
    policy.write_text("dates: year\ncolumns:\n  city: drop\n")
    result = runner.invoke(
        app,
        [
            "train",
            str(labelled_csv),
            "--target",
            "readmitted",
            "--model",
            "logistic",
            "--cv",
            "3",
            "--deid-policy",
            str(policy),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)
    with Registry(Settings(home=home)) as registry:
        version = registry.get(trained["model"])
        model = registry.load(version)
    record = version.schema["deidentification"]
    assert record["policy"] == str(policy) and len(record["policy_fingerprint"]) == 64
    assert (
        record["actions"]["patient_name"] == "drop" and record["actions"]["mrn"] == "pseudonymise"
    )
    assert record["actions"]["city"] == "drop"
    assert "patient_name" not in model.schema.feature_names
    # Quasi-identifiers the model does use are generalised in what it stores.
    background = model.background
    assert model.schema.column("zip").type == "categorical"
    assert background["zip"].dropna().str.fullmatch(r"\d{3}").all()  # ZIP3, never ZIP5
    assert background["age"].astype(float).max() <= 90
    assert model.schema.column("admission_date").role == "time"  # a year is not a feature
    report = json.loads((home / version.report_path).read_text())
    assert report["data"]["deidentification"]["k_anonymity"]["k"] == 5
    html = (home / version.report_path).with_suffix(".html").read_text()
    assert "HIPAA Safe Harbor" in html and "policy.yaml" in html
    # Nothing identifying anywhere: plaintext files under the home, and the decrypted model.
    stored = "\n".join(p.read_bytes().decode("latin-1") for p in home.rglob("*") if p.is_file())
    stored = re.sub(r"\d*\.\d+", " ", stored)  # 0.72962 in a curve is not ZIP 72962
    assert leaked(stored, identified) == []
    assert leaked(pickle.dumps(model).decode("latin-1"), identified) == []
    assert leaked(result.output, identified) == []


def test_train_deid_with_a_bad_policy_stores_nothing(tmp_path, home, labelled_csv):
    policy = tmp_path / "policy.yaml"
    policy.write_text("columns:\n  no_such_column: drop\n")
    result = runner.invoke(
        app, ["train", str(labelled_csv), "--target", "readmitted", "--deid-policy", str(policy)]
    )
    assert result.exit_code == 2
    assert "no_such_column" in result.output and "Traceback" not in result.output
    with Registry(Settings(home=home)) as registry:
        assert registry.list() == []


def train(*args: object):
    return runner.invoke(app, ["train", *map(str, args)])


@pytest.fixture
def export_csv(tmp_path: Path, fake) -> tuple[Path, list[str]]:
    """An EHR-style export: bare "Patient" and "Attending" headers, names in capitals,
    patients seen several times (so their names would be categories of a feature)."""
    patients = [f"{fake.last_name().upper()}, {fake.first_name().upper()}" for _ in range(25)]
    doctors = [f"{fake.last_name()}, {fake.first_name()} MD" for _ in range(4)]
    rng = np.random.default_rng(5)
    glucose = rng.normal(150, 40, 150).round(1)
    frame = pd.DataFrame(
        {
            "Patient": [patients[i % 25] for i in range(150)],
            "Attending": [doctors[i % 4] for i in range(150)],
            "glucose": glucose,
            "readmitted": (rng.random(150) < 1 / (1 + np.exp(-(glucose - 150) / 25))).astype(int),
        }
    )
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False)
    return path, patients + doctors


def test_train_deid_drops_names_under_bare_person_headers(home, export_csv):
    path, names = export_csv
    result = train(path, "--target", "readmitted", "--model", "logistic", "--cv", "2", "--deid")
    assert result.exit_code == 0, result.output
    stored = "\n".join(p.read_bytes().decode("latin-1") for p in home.rglob("*") if p.is_file())
    parts = {part for name in names for part in re.findall(r"[A-Za-z]{3,}", name)} - {"MD"}
    assert [part for part in parts if re.search(rf"\b{part}\b", stored + result.output)] == []
    with Registry(Settings(home=home)) as registry:
        record = registry.list()[0].schema["deidentification"]
    assert record["actions"] == {"Patient": "drop", "Attending": "drop"}
    assert record["safe_harbor"] is True and record["kept_identifiers"] == []


def test_a_bad_deid_policy_creates_no_key(tmp_path, home, export_csv):
    policy = tmp_path / "policy.yaml"
    policy.write_text("columns:\n  Patient: hash\n")
    result = train(export_csv[0], "--target", "readmitted", "--deid-policy", policy)
    assert result.exit_code == 2 and "unknown action 'hash'" in result.output
    assert not (home / "master.key").exists() and not (home / "keys.json").exists()


def test_a_policy_that_drops_the_target_says_how_to_keep_it(tmp_path, home, export_csv):
    policy = tmp_path / "policy.yaml"
    policy.write_text("columns:\n  readmitted: drop\n")
    result = train(export_csv[0], "--target", "readmitted", "--deid-policy", policy)
    assert result.exit_code == 2, result.output
    assert "de-identification would remove the target column 'readmitted'" in result.output
    assert "readmitted: keep" in result.output
    assert not (home / "master.key").exists()


def test_the_schema_record_says_when_the_output_is_not_safe_harbor(fake) -> None:
    frame = pd.DataFrame({"SSN": [fake.ssn() for _ in range(5)], "glucose": [5.1] * 5})
    policy = parse_policy({"columns": {"SSN": "keep"}})
    report = deidentify(frame, policy, key=bytes(32)).report
    record = schema_record(report)
    assert record["safe_harbor"] is False and record["kept_identifiers"] == ["SSN"]


def test_the_schema_record_names_the_columns_flagged_for_review(fake) -> None:
    frame = pd.DataFrame(
        {"notes": [f"Seen by Dr. {fake.last_name()}" for _ in range(5)], "glucose": [5.1] * 5}
    )
    record = schema_record(deidentify(frame, key=bytes(32)).report)
    assert record["safe_harbor"] is False and record["review"] == ["notes"]
    assert schema_record(deidentify(frame, key=bytes(32)).report.to_json()) == record


def test_a_column_deid_flags_for_review_is_no_feature_unless_declared(tmp_path, heart_csv):
    """Found in review: a kept but flagged column stayed a feature, and a predictor key
    could then probe its values (the 422 for an unseen level, the risk it moves)."""
    from medserve.flows.prepare import TrainRequest, prepare

    frame = pd.read_csv(heart_csv)
    escorts = ["Anna Berg", "Jonas Weber", "Marta Silva", "Peter Novak", "Laura Rossi"]
    frame["escort"] = [escorts[i % len(escorts)] for i in range(len(frame))]
    path = tmp_path / "visits.csv"
    frame.to_csv(path, index=False)
    request = dict(data=path, name="heart", target="num", positive_if=">0", deid=True)
    prepared = prepare(Settings(home=tmp_path / "home"), TrainRequest(**request))
    assert prepared.schema.deidentification["review"] == ["escort"]
    assert prepared.schema.column("escort").role == "ignore"
    assert any("flagged 'escort' for review: not used" in n for n in prepared.schema.notices)

    declared = tmp_path / "schema.yaml"
    declared.write_text("columns:\n  escort: {role: feature}\n")
    kept = prepare(Settings(home=tmp_path / "home"), TrainRequest(**request, schema_file=declared))
    assert kept.schema.column("escort").role == "feature"


def test_a_report_is_not_grouped_by_a_column_deid_flagged(tmp_path, heart_csv):
    """Found in review: `--group` on a flagged column published its levels in the report."""
    from medserve.errors import ConfigError
    from medserve.flows.prepare import TrainRequest, prepare

    frame = pd.read_csv(heart_csv)
    frame["escort"] = [["Anna Berg", "Jonas Weber"][i % 2] for i in range(len(frame))]
    path = tmp_path / "visits.csv"
    frame.to_csv(path, index=False)
    request = TrainRequest(data=path, target="num", positive_if=">0", deid=True, groups=["escort"])
    with pytest.raises(ConfigError, match="'escort' .*de-identification flagged it"):
        prepare(Settings(home=tmp_path / "home"), request)


def test_train_deid_keeps_the_name_of_a_date_it_reduced_to_the_year():
    """`medserve deid` writes `seen` as `seen_year`; before training the column keeps its
    name (a schema file names it so) and is calendar time, said in the overrides."""
    from medserve.deid.training import deidentify_for_training

    frame = pd.DataFrame(
        {"seen": ["2021-01-05", "2022-03-04", "2020-07-08"], "glucose": ["5.1", "6.2", "7.3"]}
    )
    table = deidentify_for_training(frame, None, lambda: bytes(range(32)))
    assert list(table.frame.columns) == ["seen", "glucose"]
    assert table.frame["seen"].tolist() == [2021, 2022, 2020]
    assert table.overrides["seen"] == {"role": "time"}
    assert all("written_as" not in c for c in table.report["columns"])

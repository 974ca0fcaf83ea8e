"""`medserve models export|import`: a trained model carried to another home in one
encrypted bundle, predicting exactly as before, with both actions in the audit trail."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from sqlalchemy import text

from medserve.cli import app
from medserve.config import Settings
from medserve.data import read_table
from medserve.storage import Registry
from test_cli import assert_clean_failure, run, run_json, runner, train_heart_args
from test_cli_models import audit_records

PASSPHRASE = "a long bundle passphrase"


@pytest.fixture
def homes(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    monkeypatch.delenv("MEDSERVE_BUNDLE_PASSPHRASE", raising=False)
    return tmp_path / "origin", tmp_path / "destination"


@pytest.fixture
def passphrase_file(tmp_path):
    path = tmp_path / "passphrase.txt"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


def in_home(monkeypatch, home):
    monkeypatch.setenv("MEDSERVE_HOME", str(home))


@pytest.fixture
def exported(homes, heart_csv, monkeypatch, tmp_path, passphrase_file):
    origin, _ = homes
    in_home(monkeypatch, origin)
    run_json(*train_heart_args(heart_csv))
    bundle = tmp_path / "heart.bundle"
    result = run("models", "export", "heart:1", "-o", bundle, "--passphrase-file", passphrase_file)
    assert result.exit_code == 0, result.output
    assert "heart:1 exported to" in result.stdout
    return bundle


def test_export_then_import_predicts_exactly_as_the_original(
    homes, exported, monkeypatch, passphrase_file, heart_csv
):
    origin, destination = homes
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    in_home(monkeypatch, destination)
    result = run("models", "import", exported, "--passphrase-file", passphrase_file)
    assert result.exit_code == 0, result.output
    assert "imported as heart:1 (production)" in result.stdout
    frame = read_table(heart_csv).drop(columns=["num"])
    risks = []
    for home in (origin, destination):
        with Registry(Settings(home=home)) as registry:
            risks.append(registry.load("heart:1").predict_proba(frame))
    np.testing.assert_array_equal(risks[0], risks[1])
    assert (destination / "reports/heart/v1/report.html").is_file()
    assert [r["route"] for r in audit_records(origin)] == ["cli models export"]
    (record,) = audit_records(destination)
    assert (record["route"], record["model"], record["model_version"]) == (
        "cli models import",
        "heart",
        1,
    )


def test_import_under_another_name_from_the_environment(homes, exported, monkeypatch):
    _, destination = homes
    in_home(monkeypatch, destination)
    monkeypatch.setenv("MEDSERVE_BUNDLE_PASSPHRASE", PASSPHRASE)
    imported = run_json("models", "import", exported, "--name", "heart-b")
    assert (imported["model"], imported["version"]) == ("heart-b", 1)
    again = run_json("models", "import", exported, "--name", "heart-b")
    assert again["version"] == 2 and again["stage"] == "candidate"


def test_the_passphrase_is_prompted_for_without_echo(homes, exported, monkeypatch):
    _, destination = homes
    in_home(monkeypatch, destination)
    result = runner.invoke(
        app,
        ["models", "import", str(exported)],
        input=PASSPHRASE + "\n",
    )
    assert result.exit_code == 0, result.output
    assert PASSPHRASE not in result.output


def test_a_wrong_passphrase_is_one_line_exit_4_and_nothing_registered(
    homes, exported, monkeypatch, tmp_path
):
    _, destination = homes
    in_home(monkeypatch, destination)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)
    result = run("models", "import", exported, "--passphrase-file", wrong)
    assert_clean_failure(result, "the passphrase is wrong or the file was altered", code=4)
    assert run_json("models", "list")["models"] == []
    assert audit_records(destination) == []


def test_an_altered_bundle_is_refused(homes, exported, monkeypatch, passphrase_file):
    _, destination = homes
    in_home(monkeypatch, destination)
    blob = bytearray(exported.read_bytes())
    blob[len(blob) // 2] ^= 0x80
    exported.write_bytes(bytes(blob))
    result = run("models", "import", exported, "--passphrase-file", passphrase_file)
    assert_clean_failure(result, "failed its integrity check", code=4)
    assert run_json("models", "list")["models"] == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_a_passphrase_file_other_users_can_read_is_warned_about(
    homes, exported, monkeypatch, passphrase_file
):
    _, destination = homes
    in_home(monkeypatch, destination)
    passphrase_file.chmod(0o644)
    result = run("models", "import", exported, "--passphrase-file", passphrase_file)
    assert result.exit_code == 0, result.output  # a warning, not an error
    (warning,) = result.stderr.strip().splitlines()
    assert warning == (
        f"warning: the passphrase file {passphrase_file} is open to other users (mode 0644): "
        f"chmod 600 {passphrase_file}"
    )
    passphrase_file.chmod(0o600)
    again = run("models", "import", exported, "--passphrase-file", passphrase_file)
    assert again.exit_code == 0 and again.stderr == "", again.output


def break_audit_head(home) -> None:
    """Replace the audit head's MAC: the trail refuses to grow until it is put back."""
    with Registry(Settings(home=home)) as registry, registry.engine.begin() as connection:
        connection.execute(text("UPDATE audit_head SET mac = :mac"), {"mac": "00" * 32})


def test_an_import_whose_audit_record_cannot_be_written_registers_nothing(
    homes, exported, monkeypatch, passphrase_file
):
    _, destination = homes
    in_home(monkeypatch, destination)
    importing = ("models", "import", exported, "--passphrase-file", passphrase_file)
    first = run(*importing, "--name", "heart-b")
    assert first.exit_code == 0, first.output
    break_audit_head(destination)
    for name in ("heart-b", "heart"):  # the next version of a name, the first of another
        result = run(*importing, "--name", name)
        ref = "heart-b:2" if name == "heart-b" else "heart:1"
        assert_clean_failure(result, "the audit record of the import could not be written")
        assert f"so {ref} was removed again and nothing is registered" in result.output
    assert [v["ref"] for v in run_json("models", "list")["models"]] == ["heart-b:1"]
    assert sorted(p.name for p in (destination / "reports").iterdir()) == ["heart-b"]
    assert len(list((destination / "artifacts").iterdir())) == 1

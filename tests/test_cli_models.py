"""`medserve models archive|delete|promote`: clear stage rules, and each change in the
audit trail."""

from __future__ import annotations

import pytest

from medserve.config import Settings
from medserve.security.audit import AuditLog, export_records
from medserve.storage.keystore import KeyStore
from test_cli import assert_clean_failure, run, run_json, train_heart_args


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    return tmp_path / "home"


def audit_records(home) -> list[dict]:
    settings = Settings(home=home)
    from medserve.storage import Registry

    with Registry(settings) as registry:
        log = AuditLog(registry.engine, KeyStore(settings).purpose_key("audit"))
        assert log.verify().ok
        return list(export_records(registry.engine))


def test_delete_removes_a_version_and_its_reports_and_is_audited(home, heart_csv):
    run_json(*train_heart_args(heart_csv))
    run_json(*train_heart_args(heart_csv))
    assert (home / "reports/heart/v2/report.html").is_file()
    result = run("models", "delete", "heart:2")
    assert result.exit_code == 0, result.output
    assert "heart:2 deleted" in result.stdout
    assert [m["version"] for m in run_json("models", "list")["models"]] == [1]
    assert not (home / "reports/heart/v2").exists()
    assert (home / "reports/heart/v1/report.html").is_file()
    (record,) = audit_records(home)
    assert (record["route"], record["method"], record["model"], record["model_version"]) == (
        "cli models delete",
        "CLI",
        "heart",
        2,
    )
    assert record["role"].startswith("local:") and record["client"] == "local"


def test_the_production_version_needs_force_and_then_a_warning(home, heart_csv):
    run_json(*train_heart_args(heart_csv))
    refused = run("models", "archive", "heart:1")
    assert_clean_failure(refused, "heart:1 is in production: promote another version first")
    assert "--force" in refused.output
    forced = run("models", "archive", "heart:1", "--force")
    assert forced.exit_code == 0, forced.output
    assert "has no production version now" in forced.stderr
    # Then `predict heart` does not quietly use the archived version.
    nothing = run("predict", "heart", heart_csv, "-o", home.parent / "scores.csv")
    assert_clean_failure(nothing, "'heart' has no production or candidate version")
    assert [r["route"] for r in audit_records(home)] == ["cli models archive"]


def test_promote_and_delete_name_a_version(home, heart_csv):
    run_json(*train_heart_args(heart_csv))
    for command in ("promote", "delete", "archive"):
        result = run("models", command, "heart")
        assert_clean_failure(result, f"name the version to {command}: 'heart:VERSION'")
    assert audit_records(home) == []

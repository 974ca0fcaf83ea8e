"""`medserve keys …` and `medserve audit …` as an administrator and an auditor use them."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from sqlalchemy import text
from typer.testing import CliRunner, Result

from medserve.cli import audit as audit_cli
from medserve.cli import keys as keys_cli
from medserve.config import Settings
from medserve.security.api_keys import ApiKeyStore
from medserve.security.audit import AuditEntry, AuditLog
from medserve.storage import Registry

# Mounted as src/medserve/cli/__init__.py mounts them.
app = typer.Typer()
app.add_typer(keys_cli.app, name="keys")
app.add_typer(audit_cli.app, name="audit")
runner = CliRunner()


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    if database_url is None:
        monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("MEDSERVE_DATABASE_URL", database_url)
    return Settings()


def run(*args: str) -> Result:
    return runner.invoke(app, list(args))


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def append_entries(settings: Settings, key: bytes, count: int, start: datetime) -> None:
    with Registry(settings) as registry:
        AuditLog(registry.engine, key).append_many(
            AuditEntry(
                route="/v1/models/heart/predict",
                method="POST",
                status=200,
                request_id=f"req-{i}",
                key_id="0123456789ab",
                role="predictor",
                model="heart",
                model_version=1,
                n_records=3,
                at=start + timedelta(minutes=i),
            )
            for i in range(count)
        )


def test_keys_create_prints_the_token_once_and_it_authenticates(settings: Settings) -> None:
    result = run("keys", "create", "--role", "predictor", "--name", "ward app")

    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("ms_") and len(token) == 59
    assert "only once" in result.stderr
    with Registry(settings) as registry:
        key = ApiKeyStore(registry.engine).authenticate(token)
    assert key is not None and key.role == "predictor" and key.name == "ward app"


def test_keys_create_json_is_one_object_with_the_key(settings: Settings) -> None:
    created = run_json("keys", "create", "--role", "admin")
    assert set(created) == {"id", "role", "name", "key"}
    assert created["role"] == "admin" and created["name"] is None
    assert created["key"].startswith(f"ms_{created['id']}_")


def test_keys_create_with_unknown_role_lists_the_roles(settings: Settings) -> None:
    result = run("keys", "create", "--role", "root")
    assert result.exit_code == 2
    assert "predictor, trainer, auditor, admin" in result.output
    assert "Traceback" not in result.output


def test_keys_list_never_shows_tokens(settings: Settings) -> None:
    token = run_json("keys", "create", "--role", "trainer", "--name", "ci")["key"]
    listed = run_json("keys", "list")["keys"]
    assert [(k["role"], k["name"], k["revoked_at"]) for k in listed] == [("trainer", "ci", None)]
    assert token not in json.dumps(listed)
    table = run("keys", "list")
    assert table.exit_code == 0 and "trainer" in table.stdout and token not in table.stdout


def test_keys_list_when_empty_says_how_to_create_one(settings: Settings) -> None:
    result = run("keys", "list")
    assert result.exit_code == 0 and "keys create --role" in result.stdout


def test_keys_revoke_makes_the_token_useless(settings: Settings) -> None:
    created = run_json("keys", "create", "--role", "predictor")

    result = run("keys", "revoke", created["id"])

    assert result.exit_code == 0, result.output
    assert f"revoked key {created['id']}" in result.stdout
    with Registry(settings) as registry:
        assert ApiKeyStore(registry.engine).authenticate(created["key"]) is None
    assert run_json("keys", "list")["keys"][0]["revoked_at"] is not None


def test_keys_revoke_unknown_id_fails_with_a_hint(settings: Settings) -> None:
    result = run("keys", "revoke", "nope")
    assert result.exit_code == 2
    assert "no API key with id 'nope'" in result.output and "keys list" in result.output


def test_audit_export_writes_json_lines_to_stdout(settings: Settings) -> None:
    append_entries(settings, b"k" * 32, 3, datetime(2025, 11, 1, 8, 0, tzinfo=UTC))

    result = run("audit", "export")

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["route"] == "/v1/models/heart/predict" and "mac" in records[0]


def test_audit_export_since_to_a_file(settings: Settings, tmp_path: Path) -> None:
    append_entries(settings, b"k" * 32, 5, datetime(2025, 11, 1, 8, 0, tzinfo=UTC))
    target = tmp_path / "audit.jsonl"

    result = run("audit", "export", "--since", "2025-11-01T08:03:00Z", "-o", str(target))

    assert result.exit_code == 0, result.output
    assert "exported 2 audit records" in result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    lines = target.read_text().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == ["req-3", "req-4"]
    naive = run("audit", "export", "--since", "2025-11-01 08:04")  # read as UTC
    assert [json.loads(line)["seq"] for line in naive.stdout.splitlines()] == [5]


def test_audit_export_makes_an_existing_readable_file_private(
    settings: Settings, tmp_path: Path
) -> None:
    append_entries(settings, b"k" * 32, 2, datetime(2025, 11, 1, 8, 0, tzinfo=UTC))
    target = tmp_path / "audit.jsonl"
    target.write_text("an older, longer export that must not survive\n" * 10)
    target.chmod(0o644)

    result = run("audit", "export", "-o", str(target))

    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [json.loads(line)["seq"] for line in target.read_text().splitlines()] == [1, 2]


def test_audit_export_rejects_a_bad_time(settings: Settings) -> None:
    result = run("audit", "export", "--since", "yesterday")
    assert result.exit_code == 2 and "not an ISO 8601 time" in result.output


def test_audit_verify_without_the_key_store_fails_cleanly(settings: Settings) -> None:
    result = run("audit", "verify")
    assert result.exit_code != 0
    assert "cannot load the audit key" in result.output and "Traceback" not in result.output
    assert result.exit_code == 2 and result.stdout == ""
    assert f"{settings.home / 'keys.json'} does not exist or holds none" in result.stderr
    assert not settings.home.exists()  # no key, no key file, no database: nothing created


def test_audit_verify_on_a_home_whose_key_store_has_no_audit_key_creates_none(
    settings: Settings,
) -> None:
    from medserve.storage.keystore import KeyStore

    KeyStore(settings).purpose_key("deid")  # a key store, but never an audit trail
    before = sorted(path.name for path in settings.home.iterdir())

    result = run("audit", "verify", "--json")

    assert result.exit_code == 2 and "cannot load the audit key" in result.stderr
    assert sorted(path.name for path in settings.home.iterdir()) == before
    assert not KeyStore(settings, create=False).has_purpose_key("audit")


def test_audit_verify_reports_ok_for_an_intact_trail(settings: Settings) -> None:
    key = audit_cli.audit_key(settings)
    append_entries(settings, key, 4, datetime.now(UTC))

    result = run("audit", "verify")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "OK: 4 records verified"
    assert run_json("audit", "verify") == {
        "ok": True,
        "checked": 4,
        "first_broken_seq": None,
        "reason": None,
    }


def test_audit_verify_names_the_first_broken_record(settings: Settings) -> None:
    key = audit_cli.audit_key(settings)
    append_entries(settings, key, 6, datetime.now(UTC))
    with Registry(settings) as registry, registry.engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET n_records = 0 WHERE seq = 3"))

    result = run("audit", "verify")

    assert result.exit_code == 4
    assert result.stdout.startswith("BROKEN at record 3: ")
    as_json = runner.invoke(app, ["audit", "verify", "--json"])
    assert as_json.exit_code == 4
    assert json.loads(as_json.stdout)["first_broken_seq"] == 3


def test_audit_checkpoint_writes_a_private_file_that_verify_accepts(
    settings: Settings, tmp_path: Path
) -> None:
    key = audit_cli.audit_key(settings)
    append_entries(settings, key, 5, datetime.now(UTC))
    anchor = tmp_path / "anchor.json"

    result = run("audit", "checkpoint", "-o", str(anchor))

    assert result.exit_code == 0, result.output
    assert "checkpoint of record 5" in result.stderr
    assert stat.S_IMODE(anchor.stat().st_mode) == 0o600
    written = json.loads(anchor.read_text())
    assert set(written) == {"seq", "hash", "at", "mac"} and written["seq"] == 5
    verified = run("audit", "verify", "--checkpoint", str(anchor))
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.strip() == "OK: 5 records verified (checkpoint seq 5 found)"


def test_audit_verify_with_a_checkpoint_finds_a_truncated_trail(
    settings: Settings, tmp_path: Path
) -> None:
    key = audit_cli.audit_key(settings)
    append_entries(settings, key, 3, datetime.now(UTC))
    with Registry(settings) as registry, registry.engine.connect() as connection:
        old_head = dict(
            connection.execute(text("SELECT seq, hash, mac FROM audit_head")).one()._mapping
        )
    append_entries(settings, key, 4, datetime.now(UTC))
    anchor = tmp_path / "anchor.json"
    assert run("audit", "checkpoint", "-o", str(anchor)).exit_code == 0
    with Registry(settings) as registry, registry.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE seq > 3"))
        connection.execute(
            text("UPDATE audit_head SET seq = :seq, hash = :hash, mac = :mac"), old_head
        )
    assert run("audit", "verify").exit_code == 0  # the database alone cannot tell

    result = run("audit", "verify", "--checkpoint", str(anchor))

    assert result.exit_code == 4
    assert result.stdout.startswith("BROKEN at record 4: truncated or rolled back")


def test_audit_verify_with_a_bad_checkpoint_file_fails_in_one_line(
    settings: Settings, tmp_path: Path
) -> None:
    key = audit_cli.audit_key(settings)
    append_entries(settings, key, 2, datetime.now(UTC))
    anchor = tmp_path / "anchor.json"
    assert run("audit", "checkpoint", "-o", str(anchor)).exit_code == 0
    forged = json.loads(anchor.read_text()) | {"seq": 1}
    anchor.write_text(json.dumps(forged))
    not_json = tmp_path / "not.json"
    not_json.write_text("{")
    cases = {
        anchor: (4, "checkpoint fails its MAC check"),
        not_json: (2, "is not JSON"),
        tmp_path / "missing.json": (2, "cannot read the checkpoint"),
    }
    for path, (code, message) in cases.items():
        result = run("audit", "verify", "--checkpoint", str(path))
        assert result.exit_code == code, result.output
        assert message in result.stderr and "Traceback" not in result.output


def test_audit_request_id_prints_what_the_trail_holds_for_a_client_id(settings: Settings) -> None:
    key = audit_cli.audit_key(settings)
    append_entries(settings, key, 1, datetime.now(UTC))

    result = run("audit", "request-id", "MRN-00412345")

    assert result.exit_code == 0, result.output
    with Registry(settings) as registry:
        expected = AuditLog(registry.engine, key).request_id_for("MRN-00412345")
    assert result.stdout.strip() == expected and expected.startswith("c-")

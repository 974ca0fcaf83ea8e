"""`medserve models archive|delete|promote`: clear stage rules, and each change in the
audit trail."""

from __future__ import annotations

import json

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


def test_json_output_names_the_outcome_and_failures_answer_in_json(home, heart_csv):
    trained = run_json(*train_heart_args(heart_csv))
    assert trained["outcome"] == "num > 0" and trained["ref"] == "heart:1"
    assert isinstance(trained["notices"], list) and trained["notices"]
    shown = run_json("models", "show", "heart")
    assert shown["outcome"] == "num > 0" and shown["model"] == "heart"
    table = run("models", "show", "heart")
    assert "outcome: num > 0" in table.stdout
    failed = run("models", "show", "nope", "--json")
    assert failed.exit_code == 3
    error = json.loads(failed.stdout)["error"]
    assert error["code"] == "model_not_found" and error["exit_code"] == 3
    assert "no model named 'nope'" in error["message"]


def test_help_shows_flags_without_a_value():
    """Found in use: help showed `--json <bool>`, as if flags took a value."""
    shown = run("predict", "--help")
    assert shown.exit_code == 0
    assert "<bool>" not in shown.output and "--json " in shown.output
    assert "-o, --output <path>" in shown.output


def test_version_flag_prints_the_version():
    from medserve import __version__

    shown = run("--version")
    assert shown.exit_code == 0 and shown.stdout.strip() == f"medserve {__version__}"


def test_retraining_on_the_same_data_with_the_same_options_says_so(home, heart_csv):
    first = run_json(*train_heart_args(heart_csv))
    again = run_json(*train_heart_args(heart_csv))
    assert not any("same data" in n for n in first["notices"])
    assert any(
        "heart:2 was trained on the same data with the same options as heart:1" in n
        for n in again["notices"]
    ), again["notices"]


def test_compare_two_versions_side_by_side_and_on_the_same_rows(home, heart_csv, tmp_path):
    import pandas as pd

    heart = pd.read_csv(heart_csv)
    heart[heart.dataset != "VA Long Beach"].to_csv(tmp_path / "dev.csv", index=False)
    heart[heart.dataset == "VA Long Beach"].to_csv(tmp_path / "va.csv", index=False)
    options = ("--target", "num", "--positive-if", ">0", "--cv", "3", "--name", "heart")
    run_json("train", tmp_path / "dev.csv", "--model", "logistic", *options)
    run_json("train", tmp_path / "dev.csv", "--model", "lightgbm", *options)
    alone = run_json("models", "compare", "heart:1", "heart:2")
    assert [v["family"] for v in alone["versions"]] == ["logistic", "lightgbm"]
    assert alone["same_data"] is True and alone["on_data"] is None
    assert "family" in alone["differing_options"]
    on = run_json("models", "compare", "heart:1", "heart:2", tmp_path / "va.csv")["on_data"]
    assert on["n_rows"] == 200 and on["source"] == "va.csv"
    low, high = on["auroc_difference"]["ci95"]
    assert low <= on["auroc_difference"]["estimate"] <= high
    assert on["auroc_difference"]["estimate"] == pytest.approx(on["auroc"][0] - on["auroc"][1])
    table = run("models", "compare", "heart:1", "heart:2", tmp_path / "va.csv")
    assert table.exit_code == 0 and "paired bootstrap" in table.stdout
    same = run("models", "compare", "heart:1", "heart:1")
    assert_clean_failure(same, "compared with itself")


def test_the_paired_interval_is_narrower_than_two_separate_ones():
    """Paired resampling cancels what the rows share: for two strongly related scores the
    interval of the difference is much narrower than either AUROC's own."""
    import numpy as np

    from medserve.evaluation.bootstrap import percentile_interval, ranking_metrics, resample_indices
    from medserve.evaluation.comparison import paired_auroc_difference

    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.4
    base = y + rng.normal(0, 1.0, 400)
    a, b = base + rng.normal(0, 0.1, 400), base + rng.normal(0, 0.1, 400)
    paired = paired_auroc_difference(y, a, b, seed=1)
    rows = resample_indices(400, 1000, 1)
    (low, high), _ = percentile_interval(ranking_metrics(y[rows], a[rows])["auroc"], 0.95)
    assert paired.ci95[1] - paired.ci95[0] < (high - low) / 3


def test_train_takes_a_selection_metric_and_a_list_of_families(home, heart_csv):
    trained = run_json(
        "train", heart_csv, "--target", "num", "--positive-if", ">0", "--cv", "3",
        "--model", "logistic,lightgbm", "--metric", "brier",
    )  # fmt: skip
    assert trained["family"] in {"logistic", "lightgbm", "blend"}
    bad = run("train", heart_csv, "--target", "num", "--positive-if", ">0", "--metric", "f1")
    assert_clean_failure(bad, "unknown selection metric 'f1' (--metric)")


def test_the_readme_lists_every_exit_code_the_cli_uses():
    import re
    from pathlib import Path

    from medserve.cli._common import EXIT_CODES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    listed = {int(code) for code in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}
    assert set(EXIT_CODES.values()) | {0, 130} == listed


def test_the_readme_table_of_train_options_names_every_option_train_has():
    import re
    from pathlib import Path

    import typer

    from medserve.cli import app

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("Options of `train`", 1)[1].split("\n\n", 2)[1]
    listed = set(re.findall(r"`(--[a-z-]+)", table))
    train = typer.main.get_command(app).commands["train"]
    flags = {opt for p in train.params for opt in p.opts if opt.startswith("--")} - {"--help"}
    assert flags == listed, (flags - listed, listed - flags)

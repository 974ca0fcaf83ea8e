"""The model report from the command line: written by every train and evaluate, found with
`medserve report`, and bad report options refused before anything is trained."""

from __future__ import annotations

import json
import shutil
import webbrowser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medserve.cli import app
from medserve.config import Settings
from medserve.storage import Registry
from support.reports import lists_in

runner = CliRunner()
MODEL_CARD = """\
intended_use: Flag adults with chest pain for early cardiology review.
intended_users: Emergency department clinicians.
limitations:
  - Four sites, 1981-1988.
"""
# A held-out split here: these tests count the test split's patients per subgroup.
TRAIN = (
    "--target", "num", "--positive-if", ">0", "--model", "logistic", "--cv", "3",
    "--validation", "holdout",
)  # fmt: skip


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def run_json(*args) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_clean_failure(result, message: str, code: int) -> None:
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory, heart_csv):
    """heart:1 trained once with subgroups and a model card; tests copy the home."""
    root = tmp_path_factory.mktemp("report")
    (root / "card.yaml").write_text(MODEL_CARD)
    home = root / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDSERVE_HOME", str(home))
        patch.delenv("MEDSERVE_DATABASE_URL", raising=False)
        payload = run_json(
            "train", heart_csv, *TRAIN, "--name", "heart", "--group", "dataset",
            "--group", "sex", "--model-card", root / "card.yaml",
        )  # fmt: skip
    return home, payload


@pytest.fixture
def home(tmp_path, monkeypatch, trained) -> Path:
    source, _ = trained
    target = tmp_path / "home"
    shutil.copytree(source, target)
    monkeypatch.setenv("MEDSERVE_HOME", str(target))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    return target


def test_train_writes_the_json_and_html_report_side_by_side(trained):
    source, payload = trained
    json_path, html_path = Path(payload["report"]), Path(payload["report_html"])
    assert json_path.parent == html_path.parent == source.resolve() / "reports/heart/v1"
    report = json.loads(json_path.read_text())
    for section in (
        "data", "discrimination", "classification", "calibration", "decision_curve",
        "subgroups", "explanations", "intended_use", "model",
    ):  # fmt: skip
        assert report[section], section
    assert report["data"]["sha256"] == run_json_show_sha(source)
    levels = {
        (g["column"], level["level"]): level
        for g in report["subgroups"]["groups"]
        for level in g["levels"]
    }
    assert {column for column, _ in levels} == {"dataset", "sex"}
    assert sum(level["n"] for (column, _), level in levels.items() if column == "sex") == 184
    assert not levels[("dataset", "Switzerland")]["judged"]  # 3 non-events in the test split
    assert report["intended_use"]["intended_use"].startswith("Flag adults")
    assert report["explanations"]["space"] == "log-odds"
    assert report["model"]["hyperparameters"] and report["model"]["libraries"]["scikit-learn"]
    # Aggregates only: nothing in the report has one entry per test patient.
    assert not any(len(values) >= payload["n_test"] for values in lists_in(report))
    page = html_path.read_text()
    assert "Model report: heart:1" in page and "By dataset" in page and "Four sites" in page


def run_json_show_sha(home: Path) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDSERVE_HOME", str(home))
        return run_json("models", "show", "heart")["data_sha256"]


def test_report_command_prints_the_page_and_the_json(home, tmp_path):
    html_path = home.resolve() / "reports/heart/v1/report.html"
    shown = run("report", "heart")
    assert shown.exit_code == 0 and shown.stdout.strip() == str(html_path)
    assert run_json("report", "heart:1") == json.loads(html_path.with_suffix(".json").read_text())
    (tmp_path / "out").mkdir()  # -o never creates folders
    copied = run("report", "heart", "-o", tmp_path / "out" / "heart.html")
    assert copied.exit_code == 0 and (tmp_path / "out" / "heart.html").read_bytes() == (
        html_path.read_bytes()
    )
    exported = run("report", "heart", "--json", "-o", tmp_path / "heart.json")
    assert exported.exit_code == 0
    assert json.loads((tmp_path / "heart.json").read_text())["kind"] == "training"


def test_report_open_hands_the_file_to_a_browser(home, monkeypatch):
    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    assert run("report", "heart", "--open").exit_code == 0
    assert opened == [(home.resolve() / "reports/heart/v1/report.html").as_uri()]


def test_a_missing_page_is_rendered_again_from_the_json(home):
    html_path = home / "reports/heart/v1/report.html"
    html_path.unlink()
    assert run("report", "heart").exit_code == 0
    assert "Model report: heart:1" in html_path.read_text()


def test_report_of_unknown_model_or_a_version_without_one(home):
    assert_clean_failure(run("report", "nope"), "no model named 'nope'", code=3)
    assert_clean_failure(run("report", "heart:7"), "has no version 7", code=3)
    settings = Settings(home=home)
    with Registry(settings) as registry:
        first = registry.get("heart:1")
        registry.register(
            "heart", registry.load(first), family=first.family, schema=first.schema,
            metrics=first.metrics, threshold=first.threshold, params=first.params,
            lineage=first.lineage, data_sha256=first.data_sha256,
        )  # fmt: skip
    assert_clean_failure(run("report", "heart:2"), "heart:2 has no report", code=3)


def test_evaluate_writes_a_report_with_subgroups_and_the_training_intended_use(
    home, heart_csv, tmp_path
):
    va = pd.read_csv(heart_csv).query("dataset == 'VA Long Beach'").copy()
    # The cath lab holds events only.
    va["unit"] = np.where((va["num"] > 0) & (va.index % 3 == 0), "cath lab", "ward")
    va.to_csv(tmp_path / "va.csv", index=False)
    payload = run_json("evaluate", "heart", tmp_path / "va.csv", "--group", "unit")
    report = json.loads(Path(payload["report"]).read_text())
    assert report["kind"] == "external validation"
    assert Path(payload["report_html"]) == Path(payload["report"]).with_suffix(".html")
    assert report["intended_use"]["source"] == "model card card.yaml"
    (unit,) = report["subgroups"]["groups"]
    cath_lab = next(level for level in unit["levels"] if level["level"] == "cath lab")
    assert cath_lab["note"] == "one outcome class (all events): AUROC and specificity undefined"
    # What is defined is still reported: every patient there is an event.
    assert cath_lab["metrics"]["auroc"]["estimate"] is None
    assert cath_lab["metrics"]["auroc"]["reason"]
    assert cath_lab["metrics"]["sensitivity"]["estimate"] is not None
    page = Path(payload["report_html"]).read_text()
    assert "External validation: heart:1" in page and "one outcome class" in page


def write_card(tmp_path: Path, text: str) -> Path:
    (tmp_path / "card.yaml").write_text(text)
    return tmp_path / "card.yaml"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--group", "hospital"],
            "group column 'hospital' (--group): heart_disease_uci.csv has no such column",
        ),
        (["--group", "num"], "group column 'num' (--group) is the outcome column"),
        (["--model-card", "CARD:intended_use: [oops\n"], "not valid YAML at line 2"),
        (["--model-card", "CARD:intended_use: ok\nowner: me\n"], "unknown key 'owner'"),
    ],
)
def test_bad_report_options_stop_training_and_disturb_nothing(
    home, heart_csv, tmp_path, options, message
):
    options = [
        write_card(tmp_path, option.removeprefix("CARD:")) if option.startswith("CARD:") else option
        for option in options
    ]
    artifacts = sorted(p.name for p in (home / "artifacts").iterdir())
    result = run("train", heart_csv, *TRAIN, "--name", "heart", *options)
    assert_clean_failure(result, message, code=2)
    listed = run_json("models", "list")["models"]
    assert [(m["model"], m["version"]) for m in listed] == [("heart", 1)]
    assert sorted(p.name for p in (home / "artifacts").iterdir()) == artifacts


def test_evaluate_with_an_unknown_group_writes_no_report(home, heart_csv):
    before = sorted((home / "reports/heart/v1").iterdir())
    result = run("evaluate", "heart", heart_csv, "--group", "ward")
    assert_clean_failure(result, "group column 'ward' (--group)", code=2)
    assert sorted((home / "reports/heart/v1").iterdir()) == before

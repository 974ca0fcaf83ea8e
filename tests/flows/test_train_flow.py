"""Training in steps: each step on its own, the registry open only at the two ends, warnings
kept as notices, and the report built whole before anything is stored."""

from __future__ import annotations

import errno
import json
import re
import warnings

import pytest
from markupsafe import escape
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

import medserve.flows.register as register_step
from medserve.config import Settings
from medserve.errors import ConfigError, RegistryError
from medserve.evaluation.report_types import Estimate
from medserve.flows import TrainRequest, train_and_register
from medserve.flows.notices import warnings_as_notices
from medserve.flows.register import register
from medserve.flows.train import assess, build_report, fit, prepare, training_params
from medserve.modeling import TrainedModel
from medserve.modeling.families import registered_family
from medserve.modeling.families.logistic import LogisticFamily
from medserve.storage import Registry


def heart_request(heart_csv, **options) -> TrainRequest:
    options = {"family": "logistic", "cv": 3, "name": "heart", **options}
    return TrainRequest(data=heart_csv, target="num", positive_if=">0", **options)


class OneStepLogistic(LogisticFamily):
    """The logistic family stopped after one Newton step: it cannot converge."""

    name = "logistic-one-step"
    in_auto = False

    def build(self, schema, *, seed=0):
        return super().build(schema, seed=seed).set_params(model__max_iter=1)


def test_a_model_that_does_not_converge_says_so_in_the_result_and_the_report(tmp_path, heart_csv):
    with registered_family(OneStepLogistic()):
        outcome = train_and_register(
            Settings(home=tmp_path / "home"), heart_request(heart_csv, family="logistic-one-step")
        )
    (notice,) = [n for n in outcome.notices if "ConvergenceWarning" in n]
    assert re.fullmatch(
        r"sklearn: \d+× ConvergenceWarning while training: "
        r"Newton solver did not converge after 1 iterations\.",
        notice,
    ), notice
    assert json.loads(open(outcome.report_file).read())["notices"] == outcome.report.notices
    assert notice in outcome.report.notices
    assert str(escape(notice)) in open(outcome.report_html).read()


def test_warnings_become_one_notice_per_kind_with_their_count():
    X, y = make_classification(n_samples=200, random_state=0)
    notices: list[str] = []
    with warnings_as_notices("training", notices):
        for _ in range(3):
            LogisticRegression(max_iter=1).fit(X, y)
        warnings.warn("an import-time deprecation", DeprecationWarning, stacklevel=1)
        warnings.warn_explicit(  # a family's call the library will change: not about the model
            "The default value for l1_ratios will change",
            FutureWarning,
            "_logistic.py",
            1,
            module="sklearn.linear_model._logistic",
        )
        warnings.warn_explicit(  # about interpret's plots, which medserve does not draw
            "Missing values detected. Our visualizations do not currently display them",
            UserWarning,
            "_ebm.py",
            1,
            module="interpret.glassbox._ebm._ebm",
        )
        warnings.warn_explicit("A default changes", FutureWarning, "x.py", 1, module="elsewhere")
    assert len(notices) == 2, notices
    assert notices[0].startswith(
        "sklearn: 3× ConvergenceWarning while training: lbfgs failed to converge"
    )
    assert notices[1] == "x: 1× FutureWarning while training: A default changes"


def test_the_registry_is_closed_while_the_model_is_fitted(tmp_path, heart_csv, monkeypatch):
    events: list[str] = []

    class WatchedRegistry(Registry):
        def __init__(self, settings: Settings) -> None:
            super().__init__(settings)
            events.append("(")

        def close(self) -> None:
            events.append(")")
            super().close()

    monkeypatch.setattr(register_step, "Registry", WatchedRegistry)
    train_and_register(
        Settings(home=tmp_path / "home"),
        heart_request(heart_csv),
        progress=lambda what, done, total: events.append("f"),
    )
    # Opened to check it can be written, closed, fitted, opened again to register.
    assert re.fullmatch(r"\(\)f+\(\)", "".join(events)), events


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("home is a file", RegistryError, "cannot create the medserve home"),
        ("name not allowed", ConfigError, "model name 'Heart Disease' is not allowed"),
    ],
)
def test_an_unusable_registry_fails_before_any_training(tmp_path, heart_csv, case, error, message):
    home = tmp_path / "home"
    name = "heart"
    if case == "home is a file":
        home.write_text("")
    else:
        name = "Heart Disease"
    fitted = []
    with pytest.raises(error, match=message):
        train_and_register(
            Settings(home=home),
            heart_request(heart_csv, name=name),
            progress=lambda *step: fitted.append(step),
        )
    assert fitted == []
    assert home.is_file() if case == "home is a file" else not home.exists()


def test_the_report_is_built_whole_before_anything_is_stored(tmp_path, heart_csv):
    settings = Settings(home=tmp_path / "home")
    request = heart_request(heart_csv, groups=["sex"])
    prepared = prepare(settings, request)
    result = fit(prepared)
    assessment = assess(prepared, result)
    params = training_params(request, result)
    report = build_report(prepared, result, assessment, params=params, libraries={"x": "1"})
    assert not settings.home.exists()  # the steps before registration store nothing
    assert report.split.n_test == len(result.split.y_test)
    assert report.metrics.auroc == Estimate.of(assessment.metrics["auroc"])
    assert [group.column for group in report.subgroups.groups] == ["sex"]
    assert report.model.hyperparameters == params["estimator"]

    registered = register(
        settings,
        prepared,
        result.model,
        metrics=assessment.metrics,
        params=params,
        libraries={"x": "1"},
        report=report,
    )
    assert registered.version.ref == "heart:1"
    # Stored as it was built: nothing is added to the report after building it.
    assert json.loads(registered.json_path.read_text()) == json.loads(report.model_dump_json())
    assert registered.html_path == registered.json_path.with_suffix(".html")
    assert "<title>Model report: heart:1</title>" in registered.html_path.read_text()


def test_the_page_names_the_version_the_registry_gave(tmp_path, heart_csv, monkeypatch):
    """Another registration of the name between the page's rendering and the row: the page
    is rendered again for the version this model got."""
    monkeypatch.setattr(register_step, "_next_version", lambda registry, name: 7)
    outcome = train_and_register(Settings(home=tmp_path / "home"), heart_request(heart_csv))
    assert outcome.version.ref == "heart:1"
    assert "<title>Model report: heart:1</title>" in open(outcome.report_html).read()


def test_a_page_that_cannot_be_written_registers_nothing_and_leaves_no_file(
    tmp_path, heart_csv, monkeypatch
):
    """The row, the JSON report and its page land together or not at all."""
    from medserve.storage import registry as registry_module

    real_write = registry_module.write_file_atomic

    def disk_full_for_pages(path, data, **kwargs):
        if path.suffix == ".html":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data, **kwargs)

    monkeypatch.setattr(registry_module, "write_file_atomic", disk_full_for_pages)
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(OSError, match="No space left"):
        train_and_register(settings, heart_request(heart_csv))
    with Registry(settings) as registry:
        assert registry.list() == []
    assert not list(settings.reports_dir.rglob("*"))
    assert not list(settings.artifacts_dir.rglob("*.enc"))


def test_the_page_lands_with_the_row_in_one_transaction(tmp_path, heart_csv, monkeypatch):
    """While the row is being committed, the page and the JSON are both already there."""
    from sqlalchemy.orm import Session

    seen: list[set[str]] = []
    real_commit = Session.commit

    def commit_and_look(session):
        seen.append({p.name for p in (tmp_path / "home" / "reports").rglob("report.*")})
        return real_commit(session)

    monkeypatch.setattr(Session, "commit", commit_and_look)
    outcome = train_and_register(Settings(home=tmp_path / "home"), heart_request(heart_csv))
    assert outcome.version.ref == "heart:1"
    assert {"report.json", "report.html"} in seen


def test_a_models_lineage_names_the_libraries_of_its_own_family():
    from medserve.flows.common import library_versions

    def model_of(family: str) -> TrainedModel:
        return TrainedModel(family, None, None, 0.5, "youden")  # type: ignore[arg-type]

    logistic, boosted, network = (
        library_versions(model_of(f)) for f in ("logistic", "lightgbm", "mlp")
    )
    assert logistic["scikit-learn"] and "lightgbm" not in logistic and "torch" not in logistic
    assert boosted["lightgbm"] and "torch" not in boosted
    assert network["torch"] and network["shap"] and "lightgbm" not in network

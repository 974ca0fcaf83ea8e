"""External validation's controls: the event defined for data that codes the outcome
differently, small samples, and development beside external performance."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from medserve.config import Settings
from medserve.errors import DataError, SchemaError
from medserve.flows import TrainRequest, train_and_register
from medserve.flows.evaluate import evaluate_stored


@pytest.fixture(scope="module")
def coded_heart(heart_csv) -> pd.DataFrame:
    """The heart data with its outcome coded 1/0 in 'disease' (num > 0)."""
    heart = pd.read_csv(heart_csv)
    heart["disease"] = (heart.pop("num") > 0).astype(int)
    return heart


@pytest.fixture(scope="module")
def home(tmp_path_factory, coded_heart) -> Settings:
    """A home holding `heart`, trained on the 1/0-coded outcome."""
    settings = Settings(home=tmp_path_factory.mktemp("controls") / "home")
    request = TrainRequest(
        data=coded_heart, target="disease", family="logistic", cv=3, name="heart",
        source_name="heart.csv",
    )  # fmt: skip
    train_and_register(settings, request)
    return settings


def test_evaluate_names_the_codes_found_and_the_flags_when_the_outcome_is_coded_otherwise(
    home, coded_heart
):
    external = coded_heart.assign(disease=coded_heart.disease.map({1: "yes", 0: "no"}))
    with pytest.raises(DataError) as raised:
        evaluate_stored(home, "heart", external, source_name="site-b.csv")
    message = str(raised.value)
    assert "'no' (411)" in message and "'yes' (509)" in message, message
    assert "'positive' option" in message and "'positive_if' option" in message, message


def test_evaluate_takes_the_event_value_of_the_external_data(home, coded_heart):
    external = coded_heart.assign(disease=coded_heart.disease.map({1: "yes", 0: "no"}))
    evaluated = evaluate_stored(home, "heart", external, positive="yes", source_name="b.csv")
    assert evaluated.n_events == int(coded_heart.disease.sum())
    assert evaluated.metrics["auroc"].estimate > 0.8


def test_evaluate_takes_a_rule_on_another_column(home, coded_heart, heart_csv):
    external = coded_heart.drop(columns="disease").assign(num=pd.read_csv(heart_csv).num)
    evaluated = evaluate_stored(
        home, "heart", external, target="num", positive_if=">0", source_name="b.csv"
    )
    assert evaluated.n_events == int(coded_heart.disease.sum())


def test_evaluate_refuses_an_event_value_the_data_lacks(home, coded_heart):
    with pytest.raises(DataError, match="does not occur in target 'disease'"):
        evaluate_stored(home, "heart", coded_heart, positive="yes", source_name="b.csv")


def test_training_on_few_rows_says_the_test_metrics_are_uncertain(tmp_path, coded_heart):
    few = coded_heart.sample(120, random_state=0)
    request = TrainRequest(
        data=few,
        target="disease",
        family="logistic",
        cv=3,
        name="few",
        source_name="few.csv",
        validation="holdout",
    )
    trained = train_and_register(Settings(home=tmp_path / "home"), request)
    events = int(trained.report.evaluated_rows.events)
    (said,) = [n for n in trained.notices if "held-out test split (24 rows) is small" in n]
    assert f"({trained.n_test} rows, {events} events" in said and "CIs are wide" in said
    assert said in trained.report.notices


def test_cross_validation_measures_every_row_of_a_small_table(tmp_path, coded_heart):
    """The default validation: 120 rows are all measured (out of fold), none held out."""
    few = coded_heart.sample(120, random_state=0)
    request = TrainRequest(
        data=few, target="disease", family="logistic", cv=3, name="few", source_name="few.csv"
    )
    trained = train_and_register(Settings(home=tmp_path / "home"), request)
    assert trained.report.evaluated_rows.n == 120 and trained.n_test == 0
    assert trained.report.validation.method == "cv"
    assert trained.report.validation.final_model == "all 120 rows"
    assert not any("is small" in n for n in trained.notices)


def test_training_on_enough_rows_says_nothing_of_sample_size(home):
    from medserve.flows.common import training_report_of
    from medserve.storage import Registry

    with Registry(home) as registry:
        version = registry.get("heart")
    assert not any("is small" in n for n in training_report_of(home, version).notices)


def test_evaluating_on_few_rows_says_the_metrics_are_uncertain(home, coded_heart):
    eight = pd.concat(
        [coded_heart[coded_heart.disease == 1][:4], coded_heart[coded_heart.disease == 0][:4]]
    )
    evaluated = evaluate_stored(home, "heart", eight, source_name="eight.csv")
    (said,) = [n for n in evaluated.notices if "is small" in n]
    assert said.startswith("eight.csv (the external data) is small (8 rows, 4 events")
    stored = json.loads(open(evaluated.report_path).read())
    assert said in stored["notices"]


def test_evaluate_puts_development_beside_external_performance(home, coded_heart):
    from medserve.flows.common import training_report_of
    from medserve.storage import Registry

    evaluated = evaluate_stored(home, "heart", coded_heart, source_name="same.csv")
    with Registry(home) as registry:
        trained = training_report_of(home, registry.get("heart"))
    shown = evaluated.to_json()["comparison"]
    # Development is what the training report measured: every row, out of fold.
    assert shown["development"]["rows"] == trained.evaluated_rows.n == 920
    assert shown["development"]["split"] == trained.metrics.split
    assert shown["development"]["split"].startswith("out-of-fold predictions")
    assert shown["development"]["event_rate"] == pytest.approx(509 / 920)
    assert shown["external"]["event_rate"] == pytest.approx(509 / 920)
    for name in ("auroc", "brier", "calibration_slope", "calibration_intercept"):
        assert shown["development"]["metrics"][name] == getattr(trained.metrics, name).model_dump(
            mode="json"
        )
        assert shown["external"]["metrics"][name] == evaluated.metrics[name].to_dict()
    assert not any("event rate differs" in n for n in evaluated.notices), evaluated.notices


def test_evaluate_warns_of_a_prevalence_shift_and_miscalibration(home, coded_heart):
    shifted = pd.concat(
        [coded_heart[coded_heart.disease == 1], coded_heart[coded_heart.disease == 0][:40]]
    )
    evaluated = evaluate_stored(home, "heart", shifted, source_name="shifted.csv")
    (rate,) = [n for n in evaluated.notices if "event rate differs" in n]
    assert "92.7% here against 55.3% in the training data" in rate, rate
    (intercept,) = [n for n in evaluated.notices if "calibration-in-the-large" in n]
    assert "risks run too low" in intercept, intercept
    stored = json.loads(open(evaluated.report_path).read())
    assert rate in stored["notices"] and intercept in stored["notices"]


def test_the_comparison_is_a_section_of_the_external_report_and_its_page(home, coded_heart):
    """What `evaluate` puts beside development is in the stored report, which validates
    against the published schema, and in its page, warnings included."""
    import jsonschema_rs

    from medserve.reporting.schema import published_schema

    shifted = pd.concat(
        [coded_heart[coded_heart.disease == 1], coded_heart[coded_heart.disease == 0][:40]]
    )
    evaluated = evaluate_stored(home, "heart", shifted, source_name="shifted.csv")
    stored = json.loads(open(evaluated.report_path).read())
    jsonschema_rs.validator_for(published_schema()).validate(stored)
    section = stored["comparison"]
    assert section == evaluated.to_json()["comparison"]
    assert section["external"]["rows"] == len(shifted)
    assert section["development"]["rows"] == 920
    assert set(section["development"]["metrics"]) == set(section["external"]["metrics"]) == {
        "auroc", "brier", "calibration_slope", "calibration_intercept",
    }  # fmt: skip
    (rate,) = [w for w in section["warnings"] if "event rate differs" in w]
    assert rate in stored["notices"]

    page = open(evaluated.report_html).read()
    shown = page.split('<section id="comparison">', 1)[1].split("</section>", 1)[0]
    assert "Development beside external performance" in shown
    assert "92.7%" in shown and "55.3%" in shown  # the two event rates
    assert "Calibration intercept" in shown and "event rate differs" in shown
    assert 'href="#comparison"' in page


def test_the_training_report_has_no_comparison(home):
    from medserve.flows.common import training_report_of
    from medserve.storage import Registry

    with Registry(home) as registry:
        version = registry.get("heart")
    report = training_report_of(home, version)
    stored = json.loads((home.home / version.report_path).read_text())
    assert "comparison" not in stored and not hasattr(report, "comparison")
    page = (home.home / version.report_path).with_suffix(".html").read_text()
    assert 'id="comparison"' not in page


def _implausible(coded_heart, at: int) -> pd.DataFrame:
    """200 rows, the first without an outcome, and an age of 400 in the file's row ``at``."""
    rows = coded_heart.head(200).copy().reset_index(drop=True)
    rows["disease"] = rows["disease"].astype("Int64")
    rows.loc[0, "disease"] = pd.NA
    rows.loc[at - 1, "age"] = 400
    return rows


def test_strict_refuses_a_file_with_a_value_the_http_api_refuses_naming_its_row(home, coded_heart):
    from test_cli_models import audit_records

    reports = home.home / "reports/heart/v1"
    before = sorted(reports.glob("evaluation-*")), len(audit_records(home.home))
    with pytest.raises(SchemaError) as raised:
        evaluate_stored(home, "heart", _implausible(coded_heart, 7), strict=True, source_name="x")
    message = raised.value.render(lambda name: f"--{name}")
    assert message.startswith("column 'age' row 7: 400 is outside the plausible range"), message
    assert "without --strict" in message and "\n" not in message
    assert (sorted(reports.glob("evaluation-*")), len(audit_records(home.home))) == before


def test_without_strict_such_rows_are_measured_and_counted(home, coded_heart):
    evaluated = evaluate_stored(home, "heart", _implausible(coded_heart, 7), source_name="x")
    assert evaluated.n_rows == 199
    (counted,) = [n for n in evaluated.notices if "HTTP API refuses" in n]
    assert counted.startswith("1 of 199 rows hold values the HTTP API refuses"), counted


def test_a_tiny_training_table_is_said_to_be_small_for_development(tmp_path, coded_heart):
    forty = pd.concat(
        [coded_heart[coded_heart.disease == 1][:20], coded_heart[coded_heart.disease == 0][:20]]
    )
    request = TrainRequest(
        data=forty, target="disease", family="logistic", cv=3, name="tiny", source_name="t.csv"
    )
    trained = train_and_register(Settings(home=tmp_path / "home"), request)
    (said,) = [n for n in trained.notices if n.startswith("the training data is small")]
    assert "(40 rows, 20 events, 20 non-events" in said and "develop it on more data" in said
    assert said in trained.report.notices

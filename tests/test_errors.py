"""Errors say what went wrong, not how a channel shows it: an option named in a message
reads as ``--flag`` on the command line and as ``the 'name' option`` everywhere else, and
the command line alone decides exit codes (the HTTP app its statuses: tests/http)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from medserve import errors
from medserve.cli import app as cli_app
from medserve.cli._common import EXIT_CODES, cli_option, exit_code, handle_errors
from medserve.errors import (
    AuthError,
    ConfigError,
    DataError,
    ExplanationUnavailable,
    Forbidden,
    IntegrityError,
    Location,
    MedserveError,
    ModelNotFound,
    ModelUnavailable,
    PayloadTooLarge,
    RateLimited,
    RegistryError,
    SchemaError,
    option,
)
from medserve.scoring.predictor import InvalidRecords


def test_an_option_reads_as_a_flag_on_the_command_line_and_by_name_elsewhere():
    error = ConfigError(f"test size 0.9 ({option('test_size')}) must lie between 0.05 and 0.5")
    assert error.render(cli_option) == "test size 0.9 (--test-size) must lie between 0.05 and 0.5"
    neutral = "test size 0.9 (the 'test_size' option) must lie between 0.05 and 0.5"
    assert error.message == str(error) == neutral
    assert "\x00" not in str(error)


def test_the_first_option_named_is_the_location_unless_the_raiser_says():
    assert ConfigError(f"give {option('positive')} or {option('positive_if')}").location == (
        Location(option="positive")
    )
    where = DataError(f"with {option('ignore')}", location=Location(column="empty")).location
    assert where == Location(option="ignore", column="empty")
    assert where.to_dict() == {"option": "ignore", "column": "empty"}
    chosen = Location(option="positive_if", column="num", row=3)
    assert DataError(f"{option('positive')}", location=chosen).location == chosen
    assert DataError("no options here").location is None


def test_text_that_looks_like_an_option_is_left_as_it_is():
    error = DataError("column 'option:target' (--target) is just text")
    assert error.render(cli_option) == error.message
    assert error.location is None


def test_errors_hold_no_channel_mapping():
    for name in dir(errors):
        kind = getattr(errors, name)
        if isinstance(kind, type) and issubclass(kind, MedserveError):
            assert not hasattr(kind, "exit_code"), name
            assert not hasattr(kind, "http_status"), name


# The exit codes scripts rely on, unchanged since they were first documented.
@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (MedserveError, 1),
        (DataError, 2),
        (SchemaError, 2),
        (InvalidRecords, 2),
        (ConfigError, 2),
        (ExplanationUnavailable, 2),
        (ModelNotFound, 3),
        (IntegrityError, 4),
        (RegistryError, 5),
        (AuthError, 6),
        (Forbidden, 6),
        (RateLimited, 1),
        (PayloadTooLarge, 1),
        (ModelUnavailable, 1),
    ],
)
def test_each_error_has_its_exit_code(kind, code):
    assert exit_code(kind) == code


def test_every_error_class_has_an_exit_code():
    assert MedserveError in EXIT_CODES
    assert all(isinstance(exit_code(kind), int) for kind in MedserveError.__subclasses__())


def test_the_command_line_prints_the_flag_and_exits_with_the_errors_code():
    app = typer.Typer()

    @app.command()
    @handle_errors
    def train() -> None:
        raise ModelNotFound(f"no model named 'nope'; list them, or train one {option('name')}")

    result = CliRunner().invoke(app, [])
    assert result.exit_code == 3
    assert result.output.strip() == "error: no model named 'nope'; list them, or train one --name"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    return tmp_path / "home"


HEART = ("--target", "num", "--positive-if", ">0", "--model", "logistic")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--positive-if", ">0"), "say which column is the outcome with --target"),
        (
            ("--target", "num", "--positive-if", "big"),
            "the event definition 'big' (--positive-if) is not a rule",
        ),
        (("--target", "num"), "define the event with --positive (the event's value) or "),
        ((*HEART, "--missing", "chol"), "missing-value declaration 'chol' (--missing) should"),
        ((*HEART, "--ignore", "ward"), "--ignore names column(s) not in the data: ward"),
        ((*HEART, "--test-size", "0.9", "--validation", "holdout"), "test size 0.9 (--test-size)"),
        ((*HEART, "--cv", "1"), "--cv is 1, but cross-validation needs at least 2 folds"),
        ((*HEART, "--threshold-for", "ppv=1"), "threshold rule 'ppv=1' (--threshold-for)"),
        ((*HEART, "--group", "ward"), "group column 'ward' (--group): "),
        ((*HEART, "--model-card", "no-card.yaml"), "(--model-card): no such file"),
    ],
)
def test_the_command_line_names_each_option_as_its_flag(home, heart_csv, options, message):
    result = CliRunner().invoke(cli_app, ["train", str(heart_csv), *options])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "' option" not in result.output  # the wording for HTTP and library callers
    assert len(result.output.strip().splitlines()) == 1, result.output

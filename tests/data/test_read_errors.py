"""Files that cannot be read say so in one line, and never invite an unsafe fix."""

from __future__ import annotations

import pytest

from medserve.data.infer import read_schema_file
from medserve.data.io import read_table
from medserve.errors import ConfigError, DataError


def test_a_yaml_schema_file_that_does_not_parse_is_one_line_with_its_line(tmp_path):
    path = tmp_path / "schema.yaml"
    path.write_text("columns:\n  chol: [1, 2\n  age: 3\n")
    with pytest.raises(ConfigError) as raised:
        read_schema_file(path)
    message = str(raised.value)
    assert "\n" not in message and "at line 3" in message


def test_random_bytes_in_an_npy_file_never_suggest_allow_pickle(tmp_path):
    path = tmp_path / "data.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + bytes(range(256)) * 4)
    with pytest.raises(DataError, match="not a readable NumPy array") as raised:
        read_table(path)
    assert "allow_pickle" not in str(raised.value)


def test_binary_data_named_csv_is_not_read_as_text(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_bytes(b"name,mrn\n\xff\xfe\x00garbage\x81\n")
    with pytest.raises(DataError, match="not a readable CSV file .it holds binary data"):
        read_table(path)

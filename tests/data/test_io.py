import numpy as np
import pandas as pd
import pytest

from medserve.data import default_target, read_table, write_table
from medserve.errors import DataError


def test_csv_cells_stay_text_with_missing_as_nan(heart_csv):
    frame = read_table(heart_csv)
    assert frame.shape == (920, 16)
    assert frame["age"].iloc[0] == "63"
    assert frame["ca"].isna().sum() > 500


def test_parquet_and_csv_give_the_same_rows(heart_csv, tmp_path):
    frame = pd.read_csv(heart_csv)
    frame.to_parquet(tmp_path / "heart.parquet")
    parquet = read_table(tmp_path / "heart.parquet")
    assert parquet.shape == frame.shape
    assert list(parquet.columns) == list(frame.columns)


def test_npy_last_column_is_the_label(tmp_path):
    data = np.column_stack([np.arange(10.0), np.ones(10), np.r_[np.zeros(5), np.ones(5)]])
    np.save(tmp_path / "medical_data.npy", data)
    frame = read_table(tmp_path / "medical_data.npy")
    assert list(frame.columns) == ["x0", "x1", "label"]
    assert default_target(tmp_path / "medical_data.npy") == "label"
    assert frame["label"].sum() == 5


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "the file is empty"),
        ("header.csv", "age,sex,outcome\n", "has column names but no rows"),
        ("data.xlsx", "x", "unsupported file type '.xlsx'"),
        ("dup.csv", "a,a\n1,2\n", "duplicated column names"),
    ],
)
def test_unreadable_tables_are_explained(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_table(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "absent.csv")


def test_npy_must_be_two_dimensional(tmp_path):
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    with pytest.raises(DataError, match="2-D array"):
        read_table(tmp_path / "flat.npy")


def test_write_table_round_trips_csv_and_parquet(tmp_path):
    frame = pd.DataFrame({"age": [50, 60], "risk": [0.1, 0.9]})
    for name in ("out.csv", "out.parquet"):
        write_table(frame, tmp_path / name)
        assert read_table(tmp_path / name).shape == (2, 2)

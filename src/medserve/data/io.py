"""Reading clinical tables (CSV, Parquet, NumPy) into DataFrames, with clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from medserve.errors import DataError

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".npy")
NPY_LABEL_COLUMN = "label"
# Spellings of "no value" seen in hospital exports, on top of the empty cell.
MISSING_STRINGS = ["", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "?", "."]


def table_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type '{suffix or '(none)'}'; "
            f"medserve reads {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return ".parquet" if suffix == ".pq" else suffix


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table of patients. CSV cells stay strings; the schema decides their types."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    fmt = table_format(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    if fmt in (".csv", ".tsv"):
        frame = _read_csv(path, sep="\t" if fmt == ".tsv" else ",")
    elif fmt == ".parquet":
        frame = _read_parquet(path)
    else:
        frame = _read_npy(path)
    if frame.shape[1] == 0:
        raise DataError(f"{path}: no columns found")
    if len(frame) == 0:
        raise DataError(f"{path}: has a header but no rows of data")
    duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise DataError(f"{path}: duplicated column names {duplicated}; rename them")
    return frame


def _read_csv(path: Path, sep: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            na_values=MISSING_STRINGS,
            keep_default_na=False,
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise DataError(f"{path}: not a readable CSV file ({first_line})") from exc
    # pandas renames a repeated header ('a', 'a.1'); read the header as written instead.
    header = pd.read_csv(path, sep=sep, nrows=1, header=None, dtype=str).iloc[0]
    if len(header) == frame.shape[1]:
        frame.columns = [str(c).strip() for c in header]
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc


def _read_npy(path: Path) -> pd.DataFrame:
    """Reference layout: every column but the last is a feature, the last is the label."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: not a readable NumPy array ({exc})") from exc
    if array.ndim != 2 or array.shape[1] < 2:
        raise DataError(
            f"{path}: expected a 2-D array of rows × (features + label), got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise DataError(f"{path}: expected a numeric array, got dtype {array.dtype}")
    width = len(str(array.shape[1] - 1))
    names = [f"x{i:0{width}d}" for i in range(array.shape[1] - 1)] + [NPY_LABEL_COLUMN]
    return pd.DataFrame(array.astype(float), columns=names)


def default_target(path: str | Path) -> str | None:
    """The target column implied by the file format (the last column of a .npy), if any."""
    return NPY_LABEL_COLUMN if Path(path).suffix.lower() == ".npy" else None


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write scored records next to the input format (CSV or Parquet)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    elif suffix in (".csv", ".tsv", ""):
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    else:
        raise DataError(f"{path}: cannot write '{suffix}' files; use .csv or .parquet")

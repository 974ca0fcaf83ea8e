"""Reading clinical tables (CSV, Parquet, NumPy) into DataFrames, with clear errors."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd

from medserve.core.files import create_private
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


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV
# Injection"): =1+1, +1+1, -1+1, @SUM(…), and a tab or carriage return before any of them.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A plain decimal number ("-5", "+1.5", "-2e-3") is a number to a spreadsheet, not a formula.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def write_table(frame: pd.DataFrame, path: str | Path, *, raw_cells: bool = False) -> None:
    """Write a table in the format its suffix names (CSV, TSV or Parquet).

    CSV and TSV files open live in spreadsheets, so a text cell (or header) that starts
    with ``= + - @``, a tab or a carriage return gets a leading ``'`` and is shown, never
    run; numbers, negative ones too, stay as they are. ``raw_cells`` writes every cell as
    it is. Parquet is typed and written unchanged.

    A cell holding a carriage return is quoted (the file's lines then end in CRLF, as RFC
    4180 has them): unquoted, readers end the row there and the rest becomes a new row.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame.to_parquet(create_private(path), index=False)
    elif suffix in (".csv", ".tsv", ""):
        cells = frame if raw_cells else neutralise_formulas(frame)
        cells.to_csv(
            create_private(path),
            index=False,
            sep="\t" if suffix == ".tsv" else ",",
            # the csv module quotes a field only for characters of the line terminator
            lineterminator="\r\n" if _holds_carriage_return(cells) else "\n",
        )
    else:
        raise DataError(f"{path}: cannot write '{suffix}' files; use .csv or .parquet")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell and header that a spreadsheet would run made inert."""
    out = frame.copy(deep=False)
    out.columns = [_inert(name) if isinstance(name, str) else name for name in frame.columns]
    for position in range(frame.shape[1]):
        values = frame.iloc[:, position]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
            continue
        risky = values.map(lambda value: isinstance(value, str) and _runs(value)).astype(bool)
        if risky.any():
            cells = values.astype(object)
            out.isetitem(position, cells.mask(risky, cells[risky].map(_inert)))
    return out


def _holds_carriage_return(frame: pd.DataFrame) -> bool:
    texts = [frame.columns.to_series(), *(frame.iloc[:, i] for i in range(frame.shape[1]))]
    return any(
        not pd.api.types.is_numeric_dtype(values)
        and values.map(lambda value: isinstance(value, str) and "\r" in value).astype(bool).any()
        for values in texts
    )


def _runs(text: str) -> bool:
    return text.startswith(FORMULA_STARTS) and _PLAIN_NUMBER.fullmatch(text) is None


def _inert(text: str) -> str:
    return "'" + text if _runs(text) else text

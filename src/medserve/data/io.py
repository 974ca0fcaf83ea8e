"""Reading clinical tables (CSV, Parquet, NumPy) into DataFrames, with clear errors.

CSV files are read as hospital systems and spreadsheets write them: the delimiter of a
``.csv`` is sniffed (comma, semicolon, tab or pipe), a file that is not UTF-8 is read as
Windows-1252 (Latin-1), and a semicolon-separated file is taken to write decimal commas,
as European Excel does; each guess is said in a notice (``table_notices``), and
``ReadOptions`` (``--sep``, ``--decimal``, ``--encoding``) says otherwise.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medserve.core.files import create_private
from medserve.errors import ConfigError, DataError, option

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".npy")
NPY_LABEL_COLUMN = "label"
# Spellings of "no value" seen in hospital exports, on top of the empty cell.
MISSING_STRINGS = ["", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "?", "."]
# Where a frame read from a file keeps what reading it guessed (see ``table_notices``).
NOTICES_ATTR = "medserve_notices"
# The delimiters a .csv may use, by the names people give them on the command line.
SEPARATORS = {",": ",", "comma": ",", ";": ";", "semicolon": ";", "\t": "\t", "\\t": "\t",
              "tab": "\t", "|": "|", "pipe": "|"}  # fmt: skip
_SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
# Lines of a .csv the delimiter is sniffed from.
SNIFFED_LINES = 50
# The encoding tried when a file is not UTF-8: Windows' Western European, whose printable
# characters are Latin-1's and more (older hospital systems and Excel write it).
FALLBACK_ENCODING = "cp1252"
# A number written with a decimal comma, with or without thousands points ("1,5", "1.234,5").
_DECIMAL_COMMA = re.compile(r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d*),\d+")


@dataclass(frozen=True)
class ReadOptions:
    """How to read a CSV file, where the guesses would be wrong: ``sep`` (``,``, ``;``, tab
    or ``|``; sniffed when None), ``decimal`` (``.`` or ``,``; ``,`` for semicolon files when
    None) and ``encoding`` (UTF-8, then Windows-1252, when None)."""

    sep: str | None = None
    decimal: str | None = None
    encoding: str | None = None

    def __post_init__(self) -> None:
        if self.sep is not None:
            if self.sep.lower() not in SEPARATORS:
                raise ConfigError(
                    f"{option('sep')} '{self.sep}' is not a delimiter medserve reads; use one "
                    "of , ; tab |"
                )
            object.__setattr__(self, "sep", SEPARATORS[self.sep.lower()])
        if self.decimal is not None and self.decimal not in (".", ","):
            raise ConfigError(f"{option('decimal')} should be . or , (got '{self.decimal}')")
        if self.encoding is not None:
            try:
                codecs.lookup(self.encoding)
            except LookupError:
                raise ConfigError(
                    f"{option('encoding')} '{self.encoding}' is not an encoding Python knows "
                    "(e.g. utf-8, cp1252, latin-1)"
                ) from None


def table_notices(frame: pd.DataFrame) -> list[str]:
    """What reading ``frame`` from its file guessed (delimiter, encoding, decimal comma)."""
    return list(frame.attrs.get(NOTICES_ATTR, []))


def table_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type '{suffix or '(none)'}'; "
            f"medserve reads {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return ".parquet" if suffix == ".pq" else suffix


def read_table(
    path: str | Path, options: ReadOptions | None = None, *, npy_features: int | None = None
) -> pd.DataFrame:
    """Read a table of patients. CSV cells stay strings; the schema decides their types.
    What reading a CSV guessed is in ``table_notices(frame)``.

    An ``.npy`` is the reference layout (features, then the label) unless ``npy_features``
    (a model's feature count, when scoring) says it has that many columns: then every
    column is a feature and there is no label."""
    path = Path(path)
    options = options or ReadOptions()
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    fmt = table_format(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    notices: list[str] = []
    if fmt in (".csv", ".tsv"):
        frame = _read_csv(path, fmt, options, notices)
    elif fmt == ".parquet":
        frame = _read_parquet(path)
    else:
        frame = _read_npy(path, npy_features)
    check_table(frame, str(path))
    frame.attrs[NOTICES_ATTR] = notices
    return frame


def check_table(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """``frame`` if a flow can take it (a file read, or a caller's DataFrame): columns named
    by text, none repeated, and some rows; DataError naming ``name`` otherwise."""
    if frame.shape[1] == 0:
        raise DataError(f"{name}: no columns found")
    if not all(isinstance(column, str) for column in frame.columns):
        odd = [column for column in frame.columns if not isinstance(column, str)][:3]
        raise DataError(f"{name}: column names must be text, not {odd}; rename them")
    if len(frame) == 0:
        raise DataError(f"{name}: has column names but no rows of data")
    duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise DataError(f"{name}: duplicated column names {duplicated}; rename them")
    return frame


def _read_csv(path: Path, fmt: str, options: ReadOptions, notices: list[str]) -> pd.DataFrame:
    text = _decoded(path, options.encoding, notices)
    sep = options.sep or ("\t" if fmt == ".tsv" else _sniffed_separator(text))
    if options.sep is None and sep != "," and fmt == ".csv":
        notices.append(
            f"{path.name}: read as {_SEPARATOR_NAMES[sep]}-separated (sniffed from its first "
            "lines); say otherwise with --sep"
        )
    try:
        frame = pd.read_csv(
            io.StringIO(text),
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
    header = pd.read_csv(io.StringIO(text), sep=sep, nrows=1, header=None, dtype=str).iloc[0]
    if len(header) == frame.shape[1]:
        frame.columns = [str(c).strip() for c in header]
    decimal = options.decimal or ("," if sep == ";" else ".")
    if decimal == ",":
        _read_decimal_commas(frame, path, explicit=options.decimal is not None, notices=notices)
    return frame


def _decoded(path: Path, encoding: str | None, notices: list[str]) -> str:
    """The file's text: in ``encoding`` when given, else UTF-8 (a byte-order mark dropped),
    else Windows-1252, with a notice, else Latin-1 (which decodes any byte)."""
    data = path.read_bytes()
    if b"\x00" in data[:65536] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        # No text encoding medserve reads has NUL bytes in text: this is binary data.
        raise DataError(
            f"{path}: not a readable CSV file (it holds binary data, NUL bytes, not text); "
            "export the table as CSV or Parquet"
        )
    if encoding is not None:
        # A byte-order mark is no part of the first column's name.
        codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
        try:
            return data.decode(codec)
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{path}: not readable as {encoding} (byte {exc.start}: {exc.reason}); "
                f"name the file's encoding with {option('encoding')}"
            ) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        where = data.count(b"\n", 0, exc.start) + 1
    for fallback in (FALLBACK_ENCODING, "latin-1"):
        try:
            text = data.decode(fallback)
        except UnicodeDecodeError:
            continue
        notices.append(
            f"{path.name}: not UTF-8 (line {where}): read as {fallback} (Windows/Latin-1, as "
            "older hospital systems and Excel write it); name the encoding with --encoding"
        )
        return text
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _sniffed_separator(text: str) -> str:
    """The delimiter that splits the first lines into the same number of columns most
    often (and into the most columns); a comma when none splits the header."""
    lines = text[: SNIFFED_LINES * 4096].splitlines()[:SNIFFED_LINES]
    best, best_score = ",", (0.0, 1)
    for sep in (",", ";", "\t", "|"):
        try:
            rows = [row for row in csv.reader(lines, delimiter=sep) if row]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        score = (sum(len(row) == width for row in rows) / len(rows), width)
        if score > best_score:
            best, best_score = sep, score
    return best


def _read_decimal_commas(
    frame: pd.DataFrame, path: Path, *, explicit: bool, notices: list[str]
) -> None:
    """Numbers written with decimal commas ("1,5", "1.234,5") rewritten with points."""
    changed = []
    for position, name in enumerate(frame.columns):
        cells = frame.iloc[:, position]
        text = cells.astype("string").str.strip()
        commas = text.str.fullmatch(_DECIMAL_COMMA).fillna(False).astype(bool)
        if commas.any():
            points = text[commas].str.replace(".", "", regex=False).str.replace(",", ".")
            frame.isetitem(position, cells.astype(object).mask(commas, points))
            changed.append(f"'{name}'")
    if changed and not explicit:
        notices.append(
            f"{path.name}: semicolon-separated, so decimal commas were read as decimal points "
            f"(as European Excel writes them) in {', '.join(changed)}; keep commas with "
            "--decimal ."
        )


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc


def _read_npy(path: Path, features: int | None = None) -> pd.DataFrame:
    """Reference layout: every column but the last is a feature, the last is the label;
    an array of exactly ``features`` columns has features only (x0, x1, …, named as the
    reference layout names them)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        # numpy's own message suggests allow_pickle, which would run code from the file.
        raise DataError(
            f"{path}: not a readable NumPy array (an .npy of numbers, as numpy.save writes "
            "it, is expected; object arrays are never loaded)"
        ) from exc
    labelled = not (array.ndim == 2 and features is not None and array.shape[1] == features)
    if array.ndim != 2 or array.shape[1] < (2 if labelled else 1):
        raise DataError(
            f"{path}: expected a 2-D array of rows × (features + label), got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise DataError(f"{path}: expected a numeric array, got dtype {array.dtype}")
    names = npy_feature_names(array.shape[1] - 1 if labelled else array.shape[1])
    return pd.DataFrame(
        array.astype(float), columns=names + ([NPY_LABEL_COLUMN] if labelled else [])
    )


def npy_feature_names(count: int) -> list[str]:
    """The feature columns of an .npy with ``count`` features: x0 … x9, or x00 … x10, …"""
    width = len(str(count))
    return [f"x{i:0{width}d}" for i in range(count)]


def default_target(path: str | Path) -> str | None:
    """The target column implied by the file format (the last column of a .npy), if any."""
    return NPY_LABEL_COLUMN if Path(path).suffix.lower() == ".npy" else None


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_sha256(frame: pd.DataFrame) -> str:
    """The lineage fingerprint of a table given as a DataFrame rather than a file: sha256 of
    its column names and dtypes and of pandas' per-row hashes (index included). Stable
    across processes (pandas hashes with a fixed key); a changed cell, row order, index,
    column name or dtype changes it."""
    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode("utf-8"))
    try:
        rows = pd.util.hash_pandas_object(frame, index=True)
    except TypeError as exc:  # a cell pandas cannot hash (a list, a dict)
        raise DataError(f"DataFrame: cells must be numbers, text or empty ({exc})") from exc
    digest.update(rows.to_numpy(dtype=np.uint64).tobytes())
    return digest.hexdigest()


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV
# Injection"): =1+1, +1+1, -1+1, @SUM(…), and a tab or carriage return before any of them.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A plain decimal number ("-5", "+1.5", "-2e-3") is a number to a spreadsheet, not a formula.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


# The files write_table writes (no suffix: CSV).
TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv", "")


def check_output(path: str | Path, suffixes: tuple[str, ...] | None = TABLE_SUFFIXES) -> Path:
    """``path`` if a file can be written there: DataError when it is a folder, when its
    folder does not exist (never created unasked: a typo would scatter patients' scores),
    or when its suffix is none of ``suffixes`` (None: any)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; name the file to write, e.g. {path / 'out.csv'}")
    if not path.parent.is_dir():
        raise DataError(f"{path}: the folder {path.parent} does not exist; create it first")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        wanted = " or ".join(suffix for suffix in suffixes if suffix)
        raise DataError(f"{path}: cannot write '{path.suffix}' files here; use {wanted}")
    return path


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

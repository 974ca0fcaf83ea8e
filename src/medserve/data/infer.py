"""Schema inference: guess each column's type and role from the training table."""

from __future__ import annotations

import datetime
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from medserve.data.disclosure import MAX_PUBLISHED_LEVELS, widened_bounds
from medserve.data.outcome import resolve_outcome
from medserve.data.schema import ColumnSpec, Schema, category_text
from medserve.data.values import UnreadableValue, ValueReader, is_censored, shown
from medserve.errors import ConfigError, DataError, Location, option

_ID_NAME = re.compile(
    r"^(id|.*[_ ]id|patient_?id|subject_?id|record_?id|encounter_?id|mrn|row_?id|index|"
    r"unnamed: ?0)$",
    re.IGNORECASE,
)
_DATE_LIKE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2})?)?")
# Names of dates: a column of years so named is a date `medserve deid` reduced to its year.
# `medserve deid` writes its years under a name holding date, year, yob, dob or birth
# (``deid.dates.year_column``: "seen" becomes "seen_year"), so those words stay here.
_DATE_NAME = re.compile(
    r"(date|_dt$|^dt_|dob|yob|birth|admission|admit|discharge|visit|year|_yr$)", re.IGNORECASE
)
# Years such a column holds (4 digits, as `medserve deid` leaves them).
YEARS = (1800, 2100)
# Names of record numbers ("patient_no", "case_nr", "study_number"); a bare "num" is none
# (the heart data's outcome is `num`).
_NUMBER_NAME = re.compile(
    r"^(.*[_ ])?(no|nr|nbr|number|#)\.?$|^.+[_ ]num$|^(mrn|uid|uuid|guid)$", re.IGNORECASE
)
# A column of integers distinct in at least this share of at least IDENTIFIER_ROWS rows,
# named as a number or all of IDENTIFIER_DIGITS digits or more, numbers records.
IDENTIFIER_DISTINCT = 0.95
IDENTIFIER_ROWS = 50
IDENTIFIER_DIGITS = 5
# Names of free-text columns, read as text however few their distinct (templated) values.
_TEXT_NAME = re.compile(
    r"(^|[_ ])(comments?|notes?|remarks?|text|narrative|summary|free_?text)$", re.IGNORECASE
)
# Text with at least this many words per value, on average, is free text.
TEXT_WORDS = 4
_OVERRIDE_KEYS = {"type", "role", "missing_tokens", "categories", "note", "label", "unit"}
# A column whose present values are numbers at least this often is numeric; its other
# values are listed in a notice and read as missing.
NUMERIC_SHARE = 0.9
# Below NUMERIC_SHARE but at least this often numbers: categorical, with a notice saying so.
MOSTLY_NUMERIC_SHARE = 0.5
# A categorical feature with more levels than this gets a notice (one column per level).
MANY_LEVELS = 20
# How many of a column's unreadable values a notice lists.
VALUES_LISTED = 5


def infer_schema(
    frame: pd.DataFrame,
    *,
    target: str | None,
    positive: str | None = None,
    positive_if: str | None = None,
    missing_tokens: dict[str, list[str]] | None = None,
    ignore: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    detect_zero_missing: bool = True,
) -> Schema:
    """Infer types and roles; resolve the outcome; apply declared tokens and overrides."""
    overrides = overrides or {}
    column_overrides: dict[str, dict[str, Any]] = overrides.get("columns", {}) or {}
    target = target or overrides.get("target")
    positive = positive if positive is not None else overrides.get("positive")
    positive_if = positive_if if positive_if is not None else overrides.get("positive_if")
    missing_tokens = dict(missing_tokens or {})
    for label, names in (
        (option("ignore"), ignore or []),
        (option("missing"), missing_tokens),
        ("schema file", column_overrides),
    ):
        unknown = [n for n in names if n not in frame.columns]
        if unknown:
            raise ConfigError(
                f"{label} names column(s) not in the data: {', '.join(unknown)}; "
                f"the columns are {', '.join(map(str, frame.columns))}"
            )
    if target is None:
        raise ConfigError(f"say which column is the outcome with {option('target')}")
    if target not in frame.columns:
        raise DataError(
            f"target column '{target}' not found; the columns are "
            f"{', '.join(map(str, frame.columns))}",
            location=Location(option="target", column=target),
        )

    notices: list[str] = []
    columns: list[ColumnSpec] = []
    for name in frame.columns:
        values = frame[name]
        override = column_overrides.get(name, {})
        tokens = [str(t) for t in missing_tokens.get(name, override.get("missing_tokens", []))]
        if name == target:
            spec = ColumnSpec(name=name, type=_guess_type(values), role="target")
        elif name in (ignore or []):
            spec = ColumnSpec(name=name, type=_guess_type(values), role="ignore")
        else:
            if override.get("type") == "numeric":  # declared numbers: no levels to count
                spec = ColumnSpec(name=name, type="numeric")
            else:
                spec = _infer_column(name, values, notices, tokens)
            if (
                detect_zero_missing
                and name not in missing_tokens
                and "missing_tokens" not in override
                and spec.role == "feature"
            ):
                tokens = _zero_means_missing(name, values, notices)
        spec = _apply_override(spec, override)
        spec.missing_tokens = tokens
        if spec.role == "feature" and spec.numeric_encoded:
            spec.missing_tokens = tokens + _unreadable_as_missing(name, values, tokens, notices)
        spec = _describe(spec, values)
        if spec.role == "feature" and len(spec.categories or ()) > MANY_LEVELS:
            notices.append(
                f"'{name}' is categorical with {len(spec.categories or ())} levels (one model "
                "column each); if it holds numbers written as text, declare it type: numeric "
                "in a schema file"
            )
        columns.append(spec)

    outcome = resolve_outcome(frame[target], target, positive, positive_if)
    empty = [c.name for c in columns if c.role == "feature" and c.missing_fraction >= 1.0]
    if empty:
        raise DataError(
            f"feature column(s) {', '.join(repr(e) for e in empty)} are missing in every row; "
            f"leave them out with {option('ignore')}",
            location=Location(column=empty[0]),
        )
    if not any(c.role == "feature" for c in columns):
        raise DataError("no feature columns left to learn from")
    return Schema(columns=columns, outcome=outcome, notices=notices)


def _guess_type(values: pd.Series) -> Any:
    present = values.dropna()
    if pd.api.types.is_bool_dtype(values):
        return "binary"
    numbers = pd.to_numeric(present, errors="coerce")
    if len(present) and numbers.notna().all():
        return "binary" if set(np.unique(numbers)) <= {0.0, 1.0} else "numeric"
    return "categorical"


@dataclass(frozen=True)
class _NumberReading:
    """A column read as numbers (``medserve.data.values``), before it is known to be one."""

    numbers: np.ndarray  # per row; NaN where missing or not a number
    unreadable: Counter[str]  # text that is no number (stripped) → how many rows
    censored: Counter[str]  # text read as a censored value's limit ("<2" → 2) → rows

    @property
    def share(self) -> float:
        """How often a present value (not blank, not a missing token) is a number."""
        read = int(np.isfinite(self.numbers).sum())
        total = read + sum(self.unreadable.values())
        return read / total if total else 0.0


def _read_numbers(values: pd.Series, tokens: list[str]) -> _NumberReading:
    """Every value of a column read as a number column with ``tokens`` reads it (each
    distinct value once)."""
    reader = ValueReader.of(
        ColumnSpec(name=str(values.name), type="numeric", missing_tokens=tokens)
    )
    if pd.api.types.is_bool_dtype(values):
        return _NumberReading(np.full(len(values), np.nan), Counter(), Counter())
    if pd.api.types.is_numeric_dtype(values):
        return _NumberReading(_numbers(reader, values), Counter(), Counter())
    try:
        codes, distinct = pd.factorize(values)
    except TypeError:  # unhashable values (lists): each is its own
        codes, distinct = np.arange(len(values)), values.tolist()
    rows = np.bincount(codes[codes >= 0], minlength=len(distinct))
    table = np.full(len(distinct) + 1, np.nan)  # the last entry: a missing value's code -1
    unreadable: Counter[str] = Counter()
    censored: Counter[str] = Counter()
    for k, value in enumerate(distinct):
        try:
            table[k] = reader.number(value)
        except UnreadableValue:
            if isinstance(value, str):  # text only: a list or infinity is named by prepare
                unreadable[value.strip()] += int(rows[k])
            continue
        if is_censored(value) and not np.isnan(table[k]):
            censored[str(value).strip()] += int(rows[k])
    return _NumberReading(table[codes], unreadable, censored)


def _listed(counts: Counter[str]) -> str:
    """'haemolysed' (3), 'clotted' (1) and 2 more."""
    common = counts.most_common()
    listed = ", ".join(f"{shown(text)} ({n})" for text, n in common[:VALUES_LISTED])
    return listed + (
        f" and {len(common) - VALUES_LISTED} more" if len(common) > VALUES_LISTED else ""
    )


def _unreadable_as_missing(
    name: str, values: pd.Series, tokens: list[str], notices: list[str]
) -> list[str]:
    """A number column's values that are no numbers, as missing tokens, said in a notice;
    and a notice counting its censored values."""
    reading = _read_numbers(values, tokens)
    if reading.censored:
        notices.append(
            f"'{name}': {sum(reading.censored.values())} censored values read as their limit "
            f"('<2' as 2): {_listed(reading.censored)}"
        )
    if not reading.unreadable:
        return []
    rows = sum(reading.unreadable.values())
    notices.append(
        f"'{name}' is numeric: {rows} values that are not numbers read as missing: "
        f"{_listed(reading.unreadable)}"
    )
    found: dict[str, str] = {}
    for text in reading.unreadable:
        found.setdefault(text.lower(), text)
    return list(found.values())


def _infer_column(
    name: str, values: pd.Series, notices: list[str], tokens: list[str]
) -> ColumnSpec:
    present = values.dropna()
    n_unique = present.nunique()
    # Dates first: sorted timestamps would otherwise pass for a row counter.
    if _holds_datetimes(values, present):
        notices.append(
            f"'{name}' holds dates (a date-time column): not used as a feature (derive "
            "intervals such as age or length of stay first)"
        )
        return ColumnSpec(name=name, type="datetime", role="time")
    if _ID_NAME.match(name) or _looks_like_identifier(present):
        notices.append(f"'{name}' looks like an identifier: excluded from the features")
        return ColumnSpec(name=name, type="categorical", role="id")
    if _numbers_records(name, present):
        notices.append(
            f"'{name}' holds a different whole number in almost every row (a record or "
            "patient number): excluded from the features"
        )
        return ColumnSpec(name=name, type="categorical", role="id")
    if present.empty:
        return ColumnSpec(name=name, type="numeric")
    if n_unique == 1 and len(present) == len(values):
        notices.append(
            f"'{name}' has one value ({shown(present.iloc[0])}) in every row: it cannot "
            "inform the model; not used as a feature"
        )
        return ColumnSpec(name=name, type=_guess_type(values), role="ignore")
    if _holds_years(name, present):
        notices.append(
            f"'{name}' holds years (as `medserve deid` leaves dates): not a feature; derive "
            "an interval first"
        )
        return ColumnSpec(name=name, type="numeric", role="time")
    # A bool column, or one of bools with blanks (object dtype: a DataFrame from read_csv).
    if pd.api.types.is_bool_dtype(values) or all(
        isinstance(value, bool | np.bool_) for value in present.tolist()
    ):
        return ColumnSpec(name=name, type="binary", categories=["False", "True"])
    reading = _read_numbers(values, tokens)
    numbers = reading.numbers[np.isfinite(reading.numbers)]
    if reading.share >= NUMERIC_SHARE or (len(numbers) == 0 and not reading.unreadable):
        if len(numbers) and set(np.unique(numbers)) <= {0.0, 1.0}:
            return ColumnSpec(name=name, type="binary")
        return ColumnSpec(name=name, type="numeric")
    if reading.share >= MOSTLY_NUMERIC_SHARE:
        notices.append(
            f"'{name}' is mostly numbers ({reading.share:.0%}) but read as categorical because "
            f"of {_listed(reading.unreadable)}; declare it type: numeric in a schema file "
            f"(those values then read as missing) or list them with --missing {name}=…"
        )
    text = present.astype(str)
    if text.str.match(_DATE_LIKE).mean() >= 0.9:
        parsed = pd.to_datetime(text, errors="coerce", format="mixed")
        if parsed.notna().mean() >= 0.9:
            notices.append(
                f"'{name}' holds dates: not used as a feature (derive intervals such as "
                "age or length of stay first)"
            )
            return ColumnSpec(name=name, type="datetime", role="time")
    words = text.str.split().str.len().mean()
    if n_unique > 0.5 * len(present) and words >= TEXT_WORDS:
        notices.append(f"'{name}' is free text: not used as a feature by tabular families")
        return ColumnSpec(name=name, type="text", role="text")
    if _TEXT_NAME.search(name) or words >= TEXT_WORDS:
        notices.append(
            f"'{name}' is free text ({n_unique} distinct texts, "
            f"{'named as notes' if _TEXT_NAME.search(name) else f'{words:.0f} words each'}): "
            "not used as a feature by tabular families; declare it in a schema file (type: "
            "categorical, role: feature) to use its texts as levels"
        )
        return ColumnSpec(name=name, type="text", role="text")
    if n_unique > 0.5 * len(present) and len(present) >= 20:
        notices.append(
            f"'{name}' has a different value in most rows ({n_unique} levels): treated as "
            "an identifier and excluded"
        )
        return ColumnSpec(name=name, type="categorical", role="id")
    if n_unique > MAX_PUBLISHED_LEVELS:
        notices.append(
            f"'{name}' has {n_unique} different values: not used as a feature (it may hold "
            "names or other identifiers); declare it in a schema file (type: categorical, "
            "role: feature) to use it"
        )
        return ColumnSpec(name=name, type="categorical", role="ignore")
    # An empty level list marks "levels, not numbers"; _describe fills it in.
    return ColumnSpec(name=name, type="binary" if n_unique == 2 else "categorical", categories=[])


def _holds_datetimes(values: pd.Series, present: pd.Series) -> bool:
    """A date-time column (Parquet's timestamps, a DataFrame's datetime64), or one of
    date or date-time objects: calendar time, never a number of nanoseconds."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    return (
        values.dtype == object
        and not present.empty
        and all(isinstance(value, datetime.date | pd.Timestamp) for value in present.tolist())
    )


def _whole_numbers(present: pd.Series) -> pd.Series | None:
    """The present values as numbers when every one is a whole number (not a bool), also
    when written as a float ("104233.0", as a float column with blanks is exported)."""
    if present.empty or pd.api.types.is_bool_dtype(present):
        return None
    if pd.api.types.is_float_dtype(present) or pd.api.types.is_integer_dtype(present):
        numbers = present.astype(float)
    elif pd.api.types.is_numeric_dtype(present):
        return None
    else:
        if any(isinstance(value, bool | np.bool_) for value in present.tolist()):
            return None
        text = present.astype(str).str.strip()
        if not text.str.fullmatch(r"[+-]?\d+(\.0*)?").all():
            return None
        numbers = pd.to_numeric(text).astype(float)
    if not np.isfinite(numbers).all() or (numbers % 1 != 0).any():
        return None
    return numbers


def _numbers_records(name: str, present: pd.Series) -> bool:
    """Whole numbers distinct in (nearly) every row, named as a number or of many digits:
    patient or record numbers in any order, stored as integers or as floats (104233.0: a
    column of integers with a blank reads as floats). Measurements repeat, or are not
    whole; a whole-gram weight distinct in every row has neither the name nor the digits."""
    if len(present) < IDENTIFIER_ROWS or present.nunique() < IDENTIFIER_DISTINCT * len(present):
        return False
    numbers = _whole_numbers(present)
    if numbers is None:
        return False
    return bool(_NUMBER_NAME.match(name)) or bool(
        (numbers.abs() >= 10 ** (IDENTIFIER_DIGITS - 1)).all()
    )


def _holds_years(name: str, present: pd.Series) -> bool:
    """A column named as a date whose values are all years: a date `medserve deid`
    reduced to its year."""
    if not _DATE_NAME.search(name):
        return False
    numbers = _whole_numbers(present)
    return numbers is not None and bool(numbers.between(*YEARS).all())


def _looks_like_identifier(present: pd.Series) -> bool:
    """Integer row counters (1, 2, 3, …) unique in every row."""
    if len(present) < 50 or present.nunique() != len(present):
        return False
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.isna().any() or (numbers % 1 != 0).any():
        return False
    return bool(numbers.is_monotonic_increasing)


def _zero_means_missing(name: str, values: pd.Series, notices: list[str]) -> list[str]:
    """Zero in a measurement whose other values all sit far above it (glucose, BMI,
    cholesterol, blood pressure) is an unmeasured value, not a reading."""
    numbers = pd.Series(_read_numbers(values, []).numbers).dropna()
    if numbers.empty or (numbers < 0).any():
        return []
    zeros = int((numbers == 0).sum())
    nonzero = numbers[numbers != 0]
    if zeros == 0 or nonzero.empty or zeros > 0.6 * len(numbers):
        return []
    if nonzero.min() < 5 or nonzero.nunique() < 10:
        return []
    notices.append(
        f"'{name}': 0 treated as missing in {zeros} rows (no other value is below "
        f"{nonzero.min():g}); keep zeros with --missing {name}= (empty)"
    )
    return ["0"]


def _apply_override(spec: ColumnSpec, override: dict[str, Any]) -> ColumnSpec:
    unknown = set(override) - _OVERRIDE_KEYS
    if unknown:
        raise ConfigError(
            f"schema file, column '{spec.name}': unknown key(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(_OVERRIDE_KEYS))}"
        )
    if not override:
        return spec
    try:
        return ColumnSpec.model_validate({**spec.model_dump(), **override})
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ConfigError(
            f"schema file, column '{spec.name}': {'.'.join(map(str, error['loc']))}: {error['msg']}"
        ) from exc


def _describe(spec: ColumnSpec, values: pd.Series) -> ColumnSpec:
    """Record missingness, ranges and levels seen in training, each value read as every
    channel reads it (``medserve.data.values``: missing tokens match in any case)."""
    if spec.role in ("id", "text", "time", "ignore"):  # not read by the model: no levels kept
        spec.missing_fraction = float(values.isna().mean())
        return spec
    reader = ValueReader.of(spec)
    if spec.numeric_encoded:
        numbers = pd.Series(_numbers(reader, values))
        spec.missing_fraction = float(numbers.isna().mean())
        if numbers.notna().any():
            # Rounded outward: a raw extreme is never stored (``data.disclosure``).
            spec.minimum, spec.maximum = widened_bounds(float(numbers.min()), float(numbers.max()))
        return spec
    # Levels as text first (a list or an object reads as its text here: describing a
    # column never fails); the reader then applies the missing tokens and blanks.
    levels = pd.Series(reader.levels(category_text(values)), dtype=object)
    spec.missing_fraction = float(levels.isna().mean())
    if not spec.categories:
        spec.categories = sorted(levels.dropna().unique().tolist())
    return spec


def _numbers(reader: ValueReader, values: pd.Series) -> np.ndarray:
    """A numeric column as the reader reads it; a value it cannot read (text, infinity)
    counts as not measured here: ``Schema.prepare`` names it when the model is trained."""
    try:
        return reader.numbers(values)
    except UnreadableValue:
        return np.array([_number_or_nan(reader, value) for value in values.tolist()])


def _number_or_nan(reader: ValueReader, value: object) -> float:
    try:
        return reader.number(value)
    except UnreadableValue:
        return np.nan


def _parse_problem(error: Exception) -> str:
    """A parser's complaint on one line: what and where (YAML's spans several lines)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{problem} at line {mark.line + 1}" if mark is not None else problem


def read_schema_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON schema override file: {target, positive(_if), columns: {...}}."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"schema file {path}: no such file")
    try:
        text = path.read_text()
        content = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"schema file {path}: does not parse ({_parse_problem(exc)})") from exc
    if not isinstance(content, dict):
        raise ConfigError(f"schema file {path}: expected a mapping with a 'columns' section")
    unknown = set(content) - {"target", "positive", "positive_if", "columns"}
    if unknown:
        raise ConfigError(
            f"schema file {path}: unknown key(s) {', '.join(sorted(unknown))}; "
            "allowed: target, positive, positive_if, columns"
        )
    if not isinstance(content.get("columns", {}) or {}, dict):
        raise ConfigError(f"schema file {path}: 'columns' must map column names to settings")
    return content

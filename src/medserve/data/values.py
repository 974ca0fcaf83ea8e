"""THE reader of raw values: how a cell or a JSON field becomes a number, a level or
"not measured". Schema preparation, request validation, the compiled scorer and the
explanation summary all ask this module, so a value means the same on every channel
(batch files, HTTP, and the FHIR and CDS Hooks channels to come).

The rule, in order:

1. Surrounding whitespace is stripped from text.
2. Missing: None, NaN, pandas NA, the blank texts ("", "NA", "N/A", "NaN", "null",
   "None", "?", ".") and the words hospital exports write for "no value" ("unknown",
   "unk", "-", "--", "not done", "missing", …: ``MISSING_WORDS``), in any case; together
   ``BLANK_TEXTS``. (A level column keeps a word of ``MISSING_WORDS`` that is one of its
   training levels: a model trained before the word became a default reads it as it learned.)
3. Missing tokens (``ColumnSpec.missing_tokens``) come next and win over everything
   after: text matches a token in any case ("Unknown" is the token "unknown"), and a
   value that reads as a number matches a numeric token by value ("0", " 0 ", 0 and 0.0
   are all Pima's token "0").
4. Numeric columns: JSON numbers and number text (ASCII digits, no "_") are numbers;
   text may group thousands with commas in groups of three ("1,265.0", "12,000"; never
   "1,5", which is no number here: files with decimal commas are read with ``--decimal ,``);
   a censored value, a number after ``<``, ``<=``, ``>``, ``>=``, ``≤`` or ``≥`` ("<2",
   "> 400"), reads as its limit (2, 400): a result below the limit of detection is low,
   not unmeasured, and its limit is the value the laboratory vouches for;
   infinity is refused; a boolean is a number (1/0) only in a binary 0/1 column.
5. Level columns: text is the level; True/False read "True"/"False"; numbers read in
   short form (2.0 → "2"). A level matches a training level in any case and takes its
   training spelling ("ASYMPTOMATIC" → "asymptomatic"). Any other level is *unseen*:
   every scoring channel refuses it (HTTP answers 422; ``medserve predict`` stops with
   exit code 2 unless told ``--score-unseen-levels``); lists and objects are never levels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from numbers import Real
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pandas as pd

from medserve.data.io import MISSING_STRINGS

if TYPE_CHECKING:
    from medserve.data.schema import ColumnSpec

T = TypeVar("T")

# Words for "no value" in hospital exports and spreadsheets, on top of the CSV reader's
# blank spellings (compared stripped and lower-cased).
MISSING_WORDS = frozenset(
    {"unknown", "unk", "not known", "n/k", "-", "--", "---", "n.a.", "#n/a", "not done",
     "not available", "not recorded", "missing"}
)  # fmt: skip
# Text meaning "no value", compared stripped and lower-cased.
BLANK_TEXTS = frozenset(text.lower() for text in MISSING_STRINGS) | MISSING_WORDS
# A censored result: a comparison sign and its limit ("<2", ">= 400", "≤0.1").
_CENSORED = re.compile(r"(?:<=|>=|<|>|≤|≥)\s*")
# Number text: ASCII digits with an optional sign, point and exponent.
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# Thousands grouped by commas, in groups of three ("1,265.0"); never "1,5".
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
# Values numpy turns into float64 exactly as float() does (None → NaN); bool is not one.
PLAIN_NUMBER_TYPES = frozenset({int, float, type(None)})
# How many training levels a message lists before it stops.
LEVELS_SHOWN = 12
# How much of a value a message repeats (a huge payload should not make a huge error).
SHOWN_CHARACTERS = 40
# Inferred kinds of a column whose equal values read alike, so they are read once each
# (True == 1 in Python, but they read differently: such columns are read value by value).
_ALIKE_WHEN_EQUAL = frozenset(
    {"string", "empty", "integer", "floating", "mixed-integer-float", "decimal", "boolean"}
)


class UnreadableValue(ValueError):
    """A value that cannot stand for its kind of column (the text says why); ``position``
    is where it sits in the batch that was read, when a batch was read."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


@dataclass(frozen=True)
class ValueReader:
    """One column's reading rule, worked out once from its ColumnSpec."""

    name: str
    numeric: bool  # numbers (imputed, scaled) rather than levels (one-hot)
    booleans_are_numbers: bool  # a binary 0/1 column: True → 1.0, False → 0.0
    token_texts: frozenset[str]  # missing tokens, stripped and lower-cased
    token_numbers: frozenset[float]  # the missing tokens that read as numbers
    spellings: Mapping[str, str]  # lower-cased training level → its training spelling
    known: frozenset[str]  # the training spellings

    @classmethod
    def of(cls, spec: ColumnSpec) -> ValueReader:
        tokens = [token.strip() for token in spec.missing_tokens]
        token_numbers = set()
        for token in tokens:
            number = _number_text(token, censored=False)
            if number is not None and math.isfinite(number):
                token_numbers.add(number)
        spellings = {level.lower(): level for level in spec.categories or ()}
        return cls(
            name=spec.name,
            numeric=spec.numeric_encoded,
            booleans_are_numbers=spec.type == "binary",
            token_texts=frozenset(token.lower() for token in tokens),
            token_numbers=frozenset(token_numbers),
            spellings=spellings,
            known=frozenset(spellings.values()),
        )

    def number(self, value: object) -> float:
        """The value as a number; NaN means not measured. Raises UnreadableValue."""
        if isinstance(value, str) and self.token_texts:
            if value.strip().lower() in self.token_texts:
                return math.nan
        number = _number(value, booleans=self.booleans_are_numbers)
        if math.isinf(number):
            # The fitted scikit-learn steps refuse infinity with a bare ValueError.
            raise UnreadableValue(f"{shown(value)} is not a finite number")
        if number in self.token_numbers:
            return math.nan
        return number

    def level(self, value: object) -> str | None:
        """The value as a level: its training spelling when seen in training, else its own
        stripped text (an unseen level); None means not measured. Raises UnreadableValue."""
        text = _level_text(value)
        if text is None:
            return None
        folded = text.lower()
        if folded in self.token_texts:
            return None
        if folded in BLANK_TEXTS and (folded not in MISSING_WORDS or folded not in self.spellings):
            return None
        if self.token_numbers and _reads_as_number(text) in self.token_numbers:
            return None
        return self.spellings.get(folded, text)

    def unseen(self, level: str) -> bool:
        """True for a level (as ``level`` returns it) that training never saw."""
        return bool(self.known) and level not in self.known

    def read(self, value: object) -> float | str | None:
        """The value as this column reads it: a number, a level, or None (not measured)."""
        if self.numeric:
            number = self.number(value)
            return None if math.isnan(number) else number
        return self.level(value)

    def numbers(self, values: pd.Series) -> np.ndarray:
        """A column of a table as floats, NaN where not measured. Raises UnreadableValue
        with the position of the first value it cannot read."""
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
            infinite = np.flatnonzero(np.isinf(numbers))
            if len(infinite):
                _read_at(int(infinite[0]), self.number, values.iloc[int(infinite[0])])
            if self.token_numbers:
                tokens = np.isin(numbers, list(self.token_numbers))
                numbers = np.where(tokens, np.nan, numbers)
            return numbers
        return _read_column(values, self.number, math.nan, np.float64)

    def levels(self, values: pd.Series) -> np.ndarray:
        """A column of a table as levels (object array, NaN where not measured). Raises
        UnreadableValue with the position of the first value it cannot read."""
        levels = _read_column(values, self.level, None, object)
        levels[pd.isna(levels)] = np.nan
        return levels


def _read_at(position: int, read: Callable[[object], T], value: object) -> T:
    try:
        return read(value)
    except UnreadableValue as error:
        raise UnreadableValue(str(error), position) from None


def _read_column(
    values: pd.Series, read: Callable[[object], object], missing: object, dtype: type
) -> np.ndarray:
    """``read`` of every value of a column, once per distinct value where equal values
    read alike (a table repeats few distinct texts), value by value otherwise."""
    distinct = _distinct(values)
    if distinct is None:
        found = [_read_at(i, read, value) for i, value in enumerate(values.tolist())]
        return np.array(found, dtype=dtype)
    codes, uniques = distinct
    table = np.empty(len(uniques) + 1, dtype=dtype)
    for k, value in enumerate(uniques):
        try:
            table[k] = read(value)
        except UnreadableValue as error:
            raise UnreadableValue(str(error), int(np.flatnonzero(codes == k)[0])) from None
    table[-1] = missing  # factorize codes a missing value -1: the last entry
    return table[codes]


@dataclass(frozen=True)
class NumberColumns:
    """Several numeric columns read together from record-major values: the compiled
    scorer's batch form of ``ValueReader.number``."""

    readers: tuple[ValueReader, ...]
    tokens: np.ndarray  # (most tokens of any column, columns), NaN-padded

    @classmethod
    def of(cls, readers: Sequence[ValueReader]) -> NumberColumns:
        most = max((len(reader.token_numbers) for reader in readers), default=0)
        table = np.full((most, len(readers)), math.nan)
        for j, reader in enumerate(readers):
            table[: len(reader.token_numbers), j] = sorted(reader.token_numbers)
        return cls(tuple(readers), table)

    def read(self, values: list[object]) -> np.ndarray:
        """(records, columns) floats, NaN where not measured, from record-major values.
        Raises UnreadableValue with the position (in ``values``) it cannot read."""
        width = len(self.readers)
        numbers = _plain_numbers(values)
        if numbers is None:
            numbers = np.empty(len(values))
            for position, value in enumerate(values):
                numbers[position] = _read_at(position, self.readers[position % width].number, value)
            return numbers.reshape(-1, width)
        numbers = numbers.reshape(-1, width)
        if len(self.tokens):
            # Padded with NaN, which equals nothing, where a column has fewer tokens.
            is_token = (numbers[np.newaxis] == self.tokens[:, np.newaxis]).any(axis=0)
            numbers[is_token] = math.nan
        return numbers


def _plain_numbers(values: list[object]) -> np.ndarray | None:
    """All plain, finite JSON numbers (or null) as floats in one numpy call; else None."""
    if not all(type(value) in PLAIN_NUMBER_TYPES for value in values):
        return None
    try:
        numbers = np.array(values, dtype=np.float64)
    except OverflowError:
        return None
    return None if np.isinf(numbers).any() else numbers


def _number(value: object, *, booleans: bool) -> float:
    """Rules 2 and 4 without the tokens: NaN is not measured, infinity passes through."""
    if type(value) is float:  # the common case, ahead of the slower ABC checks
        return value
    if value is None:
        return math.nan
    if isinstance(value, bool | np.bool_):
        if booleans:
            return float(value)
        raise UnreadableValue(f"{shown(value)} is not a number")
    if isinstance(value, Real | Decimal):
        try:
            return float(value)
        except OverflowError:
            return math.inf
        except ValueError:  # a signalling Decimal NaN
            return math.nan
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in BLANK_TEXTS:
            return math.nan
        number = _number_text(text, censored=True)
        if number is not None:
            return number
    elif value is pd.NA or value is pd.NaT:
        return math.nan
    raise UnreadableValue(f"{shown(value)} is not a number")


def _number_text(text: str, *, censored: bool) -> float | None:
    """Rule 4 for stripped text: the number it writes (thousands grouped, a censored
    value's limit when ``censored``), or None."""
    sign = _CENSORED.match(text) if censored else None
    if sign is not None:
        text = text[sign.end() :]
        if not (_DECIMAL.fullmatch(text) or _THOUSANDS.fullmatch(text)):
            return None  # "<abc", "<inf": no limit
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    # Python's float() also takes '1_000' and non-ASCII digits: not numbers here.
    if not text.isascii() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def is_censored(value: object) -> bool:
    """True for text that reads as a censored result's limit ("<2", "> 400")."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    return _CENSORED.match(text) is not None and _number_text(text, censored=True) is not None


def _reads_as_number(text: str) -> float | None:
    try:
        return _number(text, booleans=False)
    except UnreadableValue:
        return None


def _level_text(value: object) -> str | None:
    """Rule 5's text of a value before tokens and levels; None for None and NaN."""
    if type(value) is str:
        return value.strip()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, float | np.floating | Decimal):
        number = float(value)
        if math.isnan(number):
            return None
        return f"{number:g}" if number else "0"  # -0.0 is the level "0", as 0 is
    if isinstance(value, Real):
        try:
            return f"{value:g}"
        except OverflowError:  # an integer beyond float range: kept as its digits
            return str(value)
    if isinstance(value, str):  # a str subclass
        return str(value).strip()
    if isinstance(value, Mapping | Sequence | set | frozenset | np.ndarray):
        raise UnreadableValue(f"{shown(value)} cannot be a level")
    return str(value).strip()  # another scalar (a date): its text


def level_text(value: object) -> str | None:
    """A value as level text under the rule but without a column's tokens or levels
    (e.g. for describing a column); None means blank. Lists and objects read as text."""
    try:
        text = _level_text(value)
    except UnreadableValue:
        text = str(value).strip()
    return None if text is None or text.lower() in BLANK_TEXTS else text


def _distinct(values: pd.Series) -> tuple[np.ndarray, list] | None:
    """Factorized codes and distinct values, or None where equal values may read apart."""
    if pd.api.types.infer_dtype(values, skipna=True) not in _ALIKE_WHEN_EQUAL:
        return None
    try:
        codes, uniques = pd.factorize(values)
    except TypeError:  # unhashable values (lists): read one by one
        return None
    return codes, uniques.tolist()


def unseen_level_message(value: object, categories: Sequence[str] | None, blank: str) -> str:
    """Why an unseen level is refused, listing the training levels ("'a', 'b' and 3
    more") and how to send a value that was not measured (``blank``). ``categories`` is
    None when the levels may not be shown (``data.disclosure``)."""
    if categories is None:
        return (
            f"{shown(value)} is not a level seen in training (this column's levels are not "
            f"shown); send {blank} if it was not measured"
        )
    listed = ", ".join(repr(level) for level in categories[:LEVELS_SHOWN])
    if len(categories) > LEVELS_SHOWN:
        listed += f" and {len(categories) - LEVELS_SHOWN} more"
    return (
        f"{shown(value)} is not a level seen in training; expected one of {listed} "
        f"(any case), or {blank}"
    )


def shown(value: object) -> str:
    """A value the way its sender wrote it (JSON spelling), cut short, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(_clipped(value))
    if isinstance(value, int | np.integer):
        return _clipped(str(value))
    if isinstance(value, Real):
        return number_text(float(value))
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, Sequence | set | frozenset | np.ndarray):
        return "a list"
    return f"a {type(value).__name__}"


def _clipped(text: str) -> str:
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 1] + "…"


def number_text(number: float | None) -> str:
    return f"{number:.10g}"

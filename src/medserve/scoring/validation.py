"""Checking JSON records against a model's schema before scoring.

Values are read the way ``Schema.prepare`` reads a table (numeric strings are numbers,
True → "True", 2.0 → "2", levels match regardless of case), so a record that passes here
scores the same on the fast path and on the reference pipeline."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Literal

from medserve.data.schema import ColumnSpec, Schema

ProblemRule = Literal["required", "type", "range", "category"]

# Text that Schema.prepare reads as "not measured" in a numeric column.
BLANK_TEXT = frozenset({"", "nan", "NaN", "NA", "None"})
# How many training levels a category message lists before it stops.
LEVELS_SHOWN = 12
# How much of a value a message repeats (a huge payload should not make a huge error).
SHOWN_CHARACTERS = 40


@dataclass(frozen=True)
class RecordProblem:
    """One value that does not fit the schema, said for the person who sent it."""

    record: int
    field: str
    rule: ProblemRule
    message: str


class UnreadableValue(ValueError):
    """A JSON value that cannot stand for this kind of column (the text says why)."""


def read_number(value: object) -> float:
    """A JSON value as the float ``Schema.prepare`` makes of it; NaN means not measured."""
    if value is None:
        return math.nan
    number = _parse_number(value)
    if number is None:
        raise UnreadableValue(f"{shown(value)} is not a number")
    # The fitted scikit-learn steps refuse infinity with a bare ValueError: stop it here.
    if math.isinf(number):
        raise UnreadableValue(f"{shown(value)} is not a finite number")
    return number


def _parse_number(value: object) -> float | None:
    if type(value) is float:  # the common case, ahead of the slower ABC checks
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, Real):
        try:
            return float(value)
        except OverflowError:
            return math.inf
    if isinstance(value, str):
        text = value.strip()
        if text in BLANK_TEXT:
            return math.nan
        # Python's float() also takes '1_000' and non-ASCII digits; pandas does not.
        if text.isascii() and "_" not in text:
            try:
                return float(text)
            except ValueError:
                return None
    return None


def read_level(value: object) -> str | None:
    """A JSON value as the level text ``Schema.prepare`` makes of it; None means missing."""
    if isinstance(value, str):
        return value.strip()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, Real):
        try:
            return f"{value:g}"
        except OverflowError:  # an integer beyond float range: pandas keeps it as text
            return str(value)
    raise UnreadableValue(f"{shown(value)} cannot be a level")


def missing_numbers(spec: ColumnSpec) -> frozenset[float]:
    """The numeric values of the column's missing tokens (e.g. Pima's 0 = not measured)."""
    numbers = set()
    for token in spec.missing_tokens:
        try:
            number = read_number(token)
        except UnreadableValue:
            continue
        if not math.isnan(number):
            numbers.add(number)
    return frozenset(numbers)


def plausible_range(spec: ColumnSpec) -> tuple[float, float] | None:
    """The values a numeric feature may take: the training range widened by half its span
    on each side, never below 0 for a quantity that was never negative in training.

    None when the schema recorded no range (level features, or no minimum/maximum)."""
    if not spec.numeric_encoded or spec.minimum is None or spec.maximum is None:
        return None
    span = spec.maximum - spec.minimum
    low = spec.minimum - span / 2
    if spec.minimum >= 0:
        low = max(low, 0.0)
    return low, spec.maximum + span / 2


def validate_records(
    schema: Schema, records: Sequence[Mapping[str, object]]
) -> list[RecordProblem]:
    """Every problem in every record, in record and feature order; empty when all fit.

    JSON null is always allowed (not measured); keys the model does not use are ignored."""
    return RecordValidator(schema).problems(records)


class RecordValidator:
    """``validate_records`` with the schema's rules worked out once (a served model keeps
    one, so a request pays only for checking its own values)."""

    def __init__(self, schema: Schema) -> None:
        self._features = [(spec, _FeatureRules.of(spec)) for spec in schema.features]

    def problems(self, records: Sequence[Mapping[str, object]]) -> list[RecordProblem]:
        problems: list[RecordProblem] = []
        for index, record in enumerate(records):
            if not isinstance(record, Mapping):
                message = f"record {index}: {shown(record)} is not an object of field values"
                problems.append(RecordProblem(index, "", "type", message))
                continue
            for spec, rules in self._features:
                if spec.name not in record:
                    message = "missing; send null if it was not measured"
                    problems.append(_problem(index, spec, "required", message))
                    continue
                problem = rules.check(index, record[spec.name])
                if problem is not None:
                    problems.append(problem)
        return problems


@dataclass(frozen=True)
class _FeatureRules:
    """What one feature accepts, computed once per schema rather than per record."""

    spec: ColumnSpec
    missing_numbers: frozenset[float]
    bounds: tuple[float, float] | None
    levels: frozenset[str]

    @classmethod
    def of(cls, spec: ColumnSpec) -> _FeatureRules:
        levels = frozenset(level.lower() for level in spec.categories or ())
        return cls(spec, missing_numbers(spec), plausible_range(spec), levels)

    def check(self, index: int, value: object) -> RecordProblem | None:
        if self.spec.numeric_encoded:
            return self._check_number(index, value)
        return self._check_level(index, value)

    def _check_number(self, index: int, value: object) -> RecordProblem | None:
        try:
            number = read_number(value)
        except UnreadableValue as error:
            return _problem(index, self.spec, "type", str(error))
        if math.isnan(number) or number in self.missing_numbers or self.bounds is None:
            return None
        low, high = self.bounds
        if low <= number <= high:
            return None
        message = (
            f"{_number_text(number)} is outside the plausible range {_number_text(low)} to "
            f"{_number_text(high)} seen in training ({_number_text(self.spec.minimum)} to "
            f"{_number_text(self.spec.maximum)})"
        )
        return _problem(index, self.spec, "range", message)

    def _check_level(self, index: int, value: object) -> RecordProblem | None:
        try:
            text = read_level(value)
        except UnreadableValue as error:
            return _problem(index, self.spec, "type", str(error))
        if text is None or text in self.spec.missing_tokens or not self.levels:
            return None
        if text.lower() in self.levels:
            return None
        categories = self.spec.categories or []
        listed = ", ".join(repr(level) for level in categories[:LEVELS_SHOWN])
        if len(categories) > LEVELS_SHOWN:
            listed += f" and {len(categories) - LEVELS_SHOWN} more"
        message = (
            f"{shown(value)} is not a level seen in training; expected one of {listed} "
            "(any case), or null"
        )
        return _problem(index, self.spec, "category", message)


def _problem(index: int, spec: ColumnSpec, rule: ProblemRule, message: str) -> RecordProblem:
    return RecordProblem(index, spec.name, rule, f"record {index}, field '{spec.name}': {message}")


def shown(value: object) -> str:
    """A JSON value the way its sender wrote it, cut short, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(_clipped(value))
    if isinstance(value, int):
        return _clipped(str(value))
    if isinstance(value, Real):
        return _number_text(float(value))
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, Sequence):
        return "a list"
    return f"a {type(value).__name__}"


def _clipped(text: str) -> str:
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 1] + "…"


def _number_text(number: float | None) -> str:
    return f"{number:.10g}"

"""Checking JSON records against a model's schema before scoring.

Values are read by ``medserve.data.values``, as ``Schema.prepare`` and the compiled scorer
read them, so a record that passes here scores the same on the fast path and on the
reference pipeline; a level never seen in training is refused here (rule "category")."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from medserve.data.schema import ColumnSpec, Schema
from medserve.data.values import (
    UnreadableValue,
    ValueReader,
    number_text,
    shown,
    unseen_level_message,
)

ProblemRule = Literal["required", "type", "range", "category"]


@dataclass(frozen=True)
class RecordProblem:
    """One value that does not fit the schema, said for the person who sent it."""

    record: int
    field: str
    rule: ProblemRule
    message: str


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
    reader: ValueReader
    bounds: tuple[float, float] | None

    @classmethod
    def of(cls, spec: ColumnSpec) -> _FeatureRules:
        return cls(spec, ValueReader.of(spec), plausible_range(spec))

    def check(self, index: int, value: object) -> RecordProblem | None:
        if self.reader.numeric:
            return self._check_number(index, value)
        return self._check_level(index, value)

    def _check_number(self, index: int, value: object) -> RecordProblem | None:
        try:
            number = self.reader.number(value)
        except UnreadableValue as error:
            return _problem(index, self.spec, "type", str(error))
        if math.isnan(number) or self.bounds is None:
            return None
        low, high = self.bounds
        if low <= number <= high:
            return None
        message = (
            f"{number_text(number)} is outside the plausible range {number_text(low)} to "
            f"{number_text(high)} seen in training ({number_text(self.spec.minimum)} to "
            f"{number_text(self.spec.maximum)})"
        )
        return _problem(index, self.spec, "range", message)

    def _check_level(self, index: int, value: object) -> RecordProblem | None:
        try:
            level = self.reader.level(value)
        except UnreadableValue as error:
            return _problem(index, self.spec, "type", str(error))
        if level is None or not self.reader.unseen(level):
            return None
        message = unseen_level_message(value, self.spec.categories or [], "null")
        return _problem(index, self.spec, "category", message)


def _problem(index: int, spec: ColumnSpec, rule: ProblemRule, message: str) -> RecordProblem:
    return RecordProblem(index, spec.name, rule, f"record {index}, field '{spec.name}': {message}")

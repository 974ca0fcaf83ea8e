"""Checking JSON records against a model's schema before scoring.

Values are read by ``medserve.data.values``, as ``Schema.prepare`` and the compiled scorer
read them, so a record that passes here scores the same on the fast path and on the
reference pipeline; a level never seen in training is refused here (rule "category")."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from medserve.data.disclosure import shown_levels, widened_bounds, withheld_columns
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
    """The values a numeric feature may take: the training range (widened to round bounds,
    as ``data.disclosure`` shows it) widened again by half its span on each side, never
    below 0 for a quantity that was never negative in training.

    None when the schema recorded no range (level features, or no minimum/maximum)."""
    if not spec.numeric_encoded or spec.minimum is None or spec.maximum is None:
        return None
    minimum, maximum = widened_bounds(spec.minimum, spec.maximum)
    span = maximum - minimum
    low = minimum - span / 2
    if minimum >= 0:
        low = max(low, 0.0)
    return low, maximum + span / 2


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
        withheld = withheld_columns(schema)
        self.feature_names = schema.feature_names
        self._features = [(spec, _FeatureRules.of(spec, withheld)) for spec in schema.features]

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
    # What a refusal may name (``data.disclosure``): the levels, and whether the range.
    levels_shown: list[str] | None
    range_shown: bool

    @classmethod
    def of(cls, spec: ColumnSpec, withheld: frozenset[str]) -> _FeatureRules:
        return cls(
            spec,
            ValueReader.of(spec),
            plausible_range(spec),
            shown_levels(spec, withheld),
            spec.name not in withheld,
        )

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
        if not self.range_shown:
            message = (
                f"{number_text(number)} is outside the plausible range of this column "
                "(not shown: de-identification flagged its values)"
            )
            return _problem(index, self.spec, "range", message)
        assert self.spec.minimum is not None and self.spec.maximum is not None
        seen_low, seen_high = widened_bounds(self.spec.minimum, self.spec.maximum)
        message = (
            f"{number_text(number)} is outside the plausible range {number_text(low)} to "
            f"{number_text(high)} seen in training ({number_text(seen_low)} to "
            f"{number_text(seen_high)}, rounded)"
        )
        return _problem(index, self.spec, "range", message)

    def _check_level(self, index: int, value: object) -> RecordProblem | None:
        try:
            level = self.reader.level(value)
        except UnreadableValue as error:
            return _problem(index, self.spec, "type", str(error))
        if level is None or not self.reader.unseen(level):
            return None
        message = unseen_level_message(value, self.levels_shown, "null")
        return _problem(index, self.spec, "category", message)


def _problem(index: int, spec: ColumnSpec, rule: ProblemRule, message: str) -> RecordProblem:
    return RecordProblem(index, spec.name, rule, f"record {index}, field '{spec.name}': {message}")


# What each rule means, for notices that count problems rather than show them.
RULE_MEANING: dict[ProblemRule, str] = {
    "required": "missing",
    "type": "not readable as its kind of value",
    "range": "outside the plausible range",
    "category": "a level never seen in training",
}


def frame_problems(validator: RecordValidator, frame: pd.DataFrame) -> list[RecordProblem]:
    """``validator``'s problems in the rows of a table (record = row position), the rule the
    HTTP API applies to each JSON record; empty when a feature column is absent (scoring
    names the missing columns)."""
    names = validator.feature_names
    if any(name not in frame.columns for name in names):
        return []
    return validator.problems(frame[names].to_dict("records"))


def rules_broken(problems: Sequence[RecordProblem], n_records: int) -> list[str]:
    """Per record, the rules it breaks ("age: range; cp: category"), "" when it fits: no
    values, so the text may sit beside the record without repeating anyone's data."""
    broken: list[list[str]] = [[] for _ in range(n_records)]
    for problem in problems:
        broken[problem.record].append(f"{problem.field}: {problem.rule}")
    return ["; ".join(rules) for rules in broken]


def problem_counts(problems: Sequence[RecordProblem]) -> Counter[tuple[str, ProblemRule]]:
    """How many records break each (field, rule): a field breaks one rule per record."""
    return Counter((problem.field, problem.rule) for problem in problems)


def problems_notice(problems: Sequence[RecordProblem], n_records: int) -> str | None:
    """One sentence counting the records the HTTP API would refuse, by field and rule."""
    if not problems:
        return None
    flagged = len({problem.record for problem in problems})
    counts = ", ".join(
        f"'{field}' {rule} ({RULE_MEANING[rule]}) in {count} row{'s' if count > 1 else ''}"
        for (field, rule), count in problem_counts(problems).items()
    )
    return (
        f"{flagged} of {n_records} rows hold values the HTTP API refuses (422) and were "
        f"scored anyway: {counts}; their risks deserve less trust"
    )


def problem_detail(problem: RecordProblem) -> str:
    """The problem said without its "record N, field 'x': " prefix (for a table's rows)."""
    return problem.message.removeprefix(f"record {problem.record}, field '{problem.field}': ")

"""Checking JSON records against a model's schema before scoring.

Values are read by ``medserve.data.values``, as ``Schema.prepare`` and the compiled scorer
read them, so a record that passes here scores the same on the fast path and on the
reference pipeline; a level never seen in training is refused here (rule "category").

A table (``frame_problems``) is checked column by column, with the same rule: each
distinct value of a column is judged once (a numeric column in bulk, only its values
outside the plausible range judged one by one), and the findings come back as the records
of ``DataFrame.to_dict("records")`` would have had them, in record then feature order."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
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

ProblemRule = Literal["required", "type", "range", "category", "length"]
# A rule a value breaks and what is wrong with it, before "record N, field 'x': ".
Finding = tuple[ProblemRule, str]

# The longest note a request may carry (characters): a clinical note is a few thousand;
# the encoder reads windows of it, so the cost of a request grows with its length.
MAX_NOTE_CHARS = 20_000


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
                finding = rules.finding(record[spec.name])
                if finding is not None:
                    problems.append(_problem(index, spec, *finding))
        return problems

    def frame_problems(self, frame: pd.DataFrame) -> list[RecordProblem]:
        """``problems`` of the rows of a table holding every feature column (record = row
        position), found column by column."""
        rows: list[np.ndarray] = []
        features: list[np.ndarray] = []
        findings: list[Finding] = []
        for position, (spec, rules) in enumerate(self._features):
            broken, found = rules.column_findings(_feature_column(frame, spec.name))
            rows.append(broken)
            features.append(np.full(len(broken), position))
            findings.extend(found)
        if not findings:
            return []
        row_of, feature_of = np.concatenate(rows), np.concatenate(features)
        order = np.lexsort((feature_of, row_of))  # record, then feature order
        return [
            _problem(int(row_of[k]), self._features[feature_of[k]][0], *findings[k])
            for k in order.tolist()
        ]


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

    def finding(self, value: object) -> Finding | None:
        """The rule ``value`` breaks and why; None when it fits."""
        if self.spec.type == "text":
            return _note_finding(value)
        if self.reader.numeric:
            return self._number_finding(value)
        return self._level_finding(value)

    def column_findings(self, column: pd.Series) -> tuple[np.ndarray, list[Finding]]:
        """The positions of a column's values that break a rule (ascending), and what each
        breaks: ``finding`` of each value as ``DataFrame.to_dict("records")`` gives it."""
        if self.reader.numeric and _holds_numbers(column.dtype):
            suspect = np.flatnonzero(~self._surely_fit(column))
            found = [self.finding(value) for value in _cells(column, suspect)]
            broken = [k for k, finding in enumerate(found) if finding is not None]
            return suspect[broken], [found[k] for k in broken]
        codes, first = _distinct(column)
        per_value = [self.finding(value) for value in _cells(column, first)]
        broken_codes = [code for code, finding in enumerate(per_value) if finding is not None]
        if not broken_codes:
            return np.empty(0, dtype=np.intp), []
        rows = np.flatnonzero(np.isin(codes, broken_codes))
        return rows, [per_value[code] for code in codes[rows].tolist()]

    def _surely_fit(self, column: pd.Series) -> np.ndarray:
        """Where a column of numbers surely fits: not measured, or a finite number inside the
        plausible range (a missing token then fits either way). ``finding`` judges the rest."""
        numbers = column.to_numpy(dtype=np.float64, na_value=np.nan)
        if self.bounds is None:
            return ~np.isinf(numbers)
        low, high = self.bounds
        with np.errstate(invalid="ignore"):
            return np.isnan(numbers) | ((numbers >= low) & (numbers <= high))

    def _number_finding(self, value: object) -> Finding | None:
        try:
            number = self.reader.number(value)
        except UnreadableValue as error:
            return "type", str(error)
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
            return "range", message
        assert self.spec.minimum is not None and self.spec.maximum is not None
        seen_low, seen_high = widened_bounds(self.spec.minimum, self.spec.maximum)
        message = (
            f"{number_text(number)} is outside the plausible range {number_text(low)} to "
            f"{number_text(high)} seen in training ({number_text(seen_low)} to "
            f"{number_text(seen_high)}, rounded)"
        )
        return "range", message

    def _level_finding(self, value: object) -> Finding | None:
        try:
            level = self.reader.level(value)
        except UnreadableValue as error:
            return "type", str(error)
        if level is None or not self.reader.unseen(level):
            return None
        return "category", unseen_level_message(value, self.levels_shown, "null")


def _note_finding(value: object) -> Finding | None:
    """A note is text (or absent: not written) of at most MAX_NOTE_CHARS characters."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, str):
        return "type", f"a note must be text, not {type(value).__name__}"
    if len(value) > MAX_NOTE_CHARS:
        return "length", (
            f"the note has {len(value):,} characters, over the limit of {MAX_NOTE_CHARS:,}; "
            "send its most recent part"
        )
    return None


def _holds_numbers(dtype: object) -> bool:
    """A column type whose values are numbers or missing, never text or booleans (numpy
    integers and floats, pandas' nullable ones): read in bulk as float64."""
    return getattr(dtype, "kind", None) in ("i", "u", "f")


def _feature_column(frame: pd.DataFrame, name: str) -> pd.Series:
    column = frame[name]
    # Of repeated columns, a record (``to_dict``) keeps the last.
    return column.iloc[:, -1] if isinstance(column, pd.DataFrame) else column


def _cells(column: pd.Series, positions: np.ndarray) -> list[object]:
    """The values at ``positions`` as ``DataFrame.to_dict("records")`` gives them (Python
    scalars for numpy ones, None for pandas' NA): what a record built from the row holds."""
    if not len(positions):
        return []
    part = column.iloc[positions].to_frame(name=0)
    return [record[0] for record in part.to_dict("records")]


def _distinct(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each row's code and the position of the first row of each code, where rows of one
    code hold values that every rule treats alike (equal bits, equal text, or equal values
    of one Python type: True == 1 == 1.0 and 0.0 == -0.0, but they are written apart)."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biufmM" and dtype.itemsize in (1, 2, 4, 8):
        bits = np.ascontiguousarray(column.to_numpy()).view(f"u{dtype.itemsize}")
        _, first, codes = np.unique(bits, return_index=True, return_inverse=True)
        return codes.reshape(-1), first
    if isinstance(dtype, pd.StringDtype):  # text, or the type's one missing value
        codes, uniques = pd.factorize(column)
        codes = np.where(codes < 0, len(uniques), codes)  # missing: one more code
        first = np.full(len(uniques) + 1, len(codes))
        np.minimum.at(first, codes, np.arange(len(codes)))
        return codes, first[first < len(codes)]  # no missing value: no row for its code
    return _distinct_objects(list(column))


def _distinct_objects(values: list[object]) -> tuple[np.ndarray, np.ndarray]:
    """``_distinct`` for Python objects: values without a key are each their own code."""
    codes: list[int] = []
    first: list[int] = []
    seen: dict[object, int] = {}
    for position, value in enumerate(values):
        key = _value_key(value)
        code = seen.get(key) if key is not None else None
        if code is None:
            code = len(first)
            first.append(position)
            if key is not None:
                seen[key] = code
        codes.append(code)
    return np.array(codes, dtype=np.intp), np.array(first, dtype=np.intp)


def _value_key(value: object) -> object:
    """A key equal only for values the rules cannot tell apart; None for values of other
    types, which are judged one by one."""
    kind = type(value)
    if kind in (str, int, bool) or issubclass(kind, np.integer | np.bool_):
        return kind, value
    if value is None or value is pd.NA or value is pd.NaT:
        return kind, None
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return kind, "NaN"  # every NaN is not measured
        return kind, value, math.copysign(1.0, value)  # -0.0 is written "-0"
    return None


def _problem(index: int, spec: ColumnSpec, rule: ProblemRule, message: str) -> RecordProblem:
    return RecordProblem(index, spec.name, rule, f"record {index}, field '{spec.name}': {message}")


# What each rule means, for notices that count problems rather than show them.
RULE_MEANING: dict[ProblemRule, str] = {
    "required": "missing",
    "type": "not readable as its kind of value",
    "range": "outside the plausible range",
    "category": "a level never seen in training",
    "length": "a note over the length limit",
}


def frame_problems(validator: RecordValidator, frame: pd.DataFrame) -> list[RecordProblem]:
    """``validator``'s problems in the rows of a table (record = row position), the rule the
    HTTP API applies to each JSON record; empty when a feature column is absent (scoring
    names the missing columns)."""
    if any(name not in frame.columns for name in validator.feature_names):
        return []
    return validator.frame_problems(frame)


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

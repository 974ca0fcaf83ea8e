"""The outcome definition: which value of the target column is the event."""

from __future__ import annotations

import operator
import re

import numpy as np
import pandas as pd
from pydantic import BaseModel

from medserve.errors import ConfigError, DataError, Location, option

_COMPARISONS = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
_RULE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
# Two-valued outcomes whose event is unambiguous: the first spelling of each pair.
_NATURAL_EVENTS = {
    frozenset({"1", "0"}): "1",
    frozenset({"true", "false"}): "true",
    frozenset({"yes", "no"}): "yes",
    frozenset({"y", "n"}): "y",
    frozenset({"positive", "negative"}): "positive",
    frozenset({"present", "absent"}): "present",
}


def _as_text(values: pd.Series) -> pd.Series:
    """Outcome values as comparable strings: 1.0 → '1', True → 'true'."""
    if pd.api.types.is_bool_dtype(values):
        return values.map({True: "true", False: "false"})
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        return numeric.map(lambda v: f"{v:g}")
    return values.astype(str).str.strip().str.lower()


class Outcome(BaseModel):
    """How a target column becomes 1 (event) or 0 (no event)."""

    column: str
    positive: str | None = None
    positive_if: str | None = None

    def describe(self) -> str:
        if self.positive_if:
            match = _RULE.match(self.positive_if)
            rule = f"{match.group(1)} {match.group(2)}" if match else self.positive_if.strip()
            return f"{self.column} {rule}"
        return f"{self.column} = {self.positive}"

    def binarise(self, values: pd.Series) -> np.ndarray:
        """0/1 labels for non-missing target values (drop missing ones first)."""
        if self.positive_if:
            match = _RULE.match(self.positive_if)
            if match is None:  # validated at construction by resolve_outcome
                raise ConfigError(
                    f"the event definition '{self.positive_if}' ({option('positive_if')}) is "
                    "not a rule like '>0'"
                )
            numeric = pd.to_numeric(values, errors="coerce")
            bad = numeric.isna() & values.notna()
            if bad.any():
                first = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"target '{self.column}' row {first + 1}: '{values.iloc[first]}' is not a "
                    f"number, so the rule '{self.positive_if}' ({option('positive_if')}) "
                    "cannot apply",
                    location=Location(column=self.column, row=first + 1),
                )
            compare = _COMPARISONS[match.group(1)]
            return compare(numeric.to_numpy(dtype=float), float(match.group(2))).astype(int)
        text = _as_text(values)
        return (text == str(self.positive).strip().lower()).to_numpy().astype(int)


def resolve_outcome(
    values: pd.Series, column: str, positive: str | None, positive_if: str | None
) -> Outcome:
    """Work out (or check) the event definition from the training target values."""
    present = values.dropna()
    if present.empty:
        raise DataError(f"target '{column}' has no values", location=Location(column=column))
    if positive is not None and positive_if is not None:
        raise ConfigError(f"give either {option('positive')} or {option('positive_if')}, not both")
    if positive_if is not None:
        if _RULE.match(positive_if) is None:
            raise ConfigError(
                f"the event definition '{positive_if}' ({option('positive_if')}) is not a "
                "rule; write a comparison with a number, e.g. '>0' or '>=2'"
            )
        outcome = Outcome(column=column, positive_if=positive_if)
    else:
        text = _as_text(present)
        levels = sorted(text.unique())
        if positive is not None:
            wanted = str(positive).strip().lower()
            numeric_wanted = pd.to_numeric(pd.Series([wanted]), errors="coerce").iloc[0]
            if pd.notna(numeric_wanted):
                wanted = f"{numeric_wanted:g}"
            if wanted not in levels:
                raise DataError(
                    f"the event value '{positive}' ({option('positive')}) does not occur in "
                    f"target '{column}'; its values are {_list(levels)}",
                    location=Location(column=column),
                )
            outcome = Outcome(column=column, positive=wanted)
        elif len(levels) > 2:
            raise DataError(
                f"target '{column}' has {len(levels)} values ({_list(levels)}); define the "
                f"event with {option('positive')} (the event's value) or {option('positive_if')} "
                "(a rule such as '>0')",
                location=Location(column=column),
            )
        elif len(levels) == 2:
            natural = _NATURAL_EVENTS.get(frozenset(levels))
            if natural is None:
                raise DataError(
                    f"target '{column}' has two values ({_list(levels)}); say which one is the "
                    f"event with {option('positive')}",
                    location=Location(column=column),
                )
            outcome = Outcome(column=column, positive=natural)
        else:
            outcome = Outcome(column=column, positive=levels[0])
    labels = outcome.binarise(present)
    if labels.min() == labels.max():
        only = "events" if labels[0] == 1 else "non-events"
        raise DataError(
            f"target '{column}' has only one class: all {len(labels)} rows are {only} "
            f"under '{outcome.describe()}'; a risk model needs both",
            location=Location(column=column),
        )
    return outcome


def _list(levels: list[str], limit: int = 8) -> str:
    shown = ", ".join(levels[:limit])
    return shown + (", …" if len(levels) > limit else "")

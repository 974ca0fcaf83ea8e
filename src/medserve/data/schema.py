"""The Schema: per column a type and a role, inferred from data, overridable, and used
to turn raw records into the typed frame every model pipeline starts from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from medserve.data.disclosure import shown_levels, withheld_columns
from medserve.data.outcome import Outcome
from medserve.data.values import (
    UnreadableValue,
    ValueReader,
    level_text,
    unseen_level_message,
)
from medserve.errors import SchemaError

ColumnType = Literal["numeric", "categorical", "binary", "datetime", "text"]
Role = Literal["feature", "target", "id", "group", "time", "text", "ignore"]


class ColumnSpec(BaseModel):
    """One column: how to read it and what the model saw of it in training."""

    name: str
    type: ColumnType
    role: Role = "feature"
    categories: list[str] | None = Field(
        default=None, description="Levels seen in training (categorical, binary text)."
    )
    minimum: float | None = None
    maximum: float | None = None
    missing_tokens: list[str] = Field(
        default_factory=list, description="Values meaning 'not measured', e.g. ['0']."
    )
    missing_fraction: float = 0.0
    note: str | None = None
    label: str | None = Field(
        default=None, description="What clinicians call it ('chest pain type'); else the name."
    )
    unit: str | None = Field(default=None, description="Its unit as people read it ('mmHg').")

    @property
    def shown_name(self) -> str:
        """The column as clinicians read it: its label, else its name."""
        return self.label or self.name

    @property
    def numeric_encoded(self) -> bool:
        """Numbers go through imputation (and scaling); text levels through one-hot."""
        return self.type == "numeric" or (self.type == "binary" and self.categories is None)


class Schema(BaseModel):
    """All columns of a training table, the outcome definition and inference notices."""

    columns: list[ColumnSpec]
    outcome: Outcome | None = None
    notices: list[str] = Field(default_factory=list)
    deidentification: dict[str, Any] | None = Field(
        default=None,
        description="Set when `train --deid` ran: standard, policy and fingerprint, date "
        "mode, and the action taken on each identifier column (no values).",
    )

    @property
    def features(self) -> list[ColumnSpec]:
        return [c for c in self.columns if c.role == "feature"]

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.features]

    def column(self, name: str) -> ColumnSpec:
        for spec in self.columns:
            if spec.name == name:
                return spec
        raise SchemaError(f"no column '{name}' in the schema")

    def prepare(
        self, frame: pd.DataFrame, *, row_numbers: Sequence[int] | None = None
    ) -> pd.DataFrame:
        """Raw records → the typed feature frame (float numbers, string levels, NaN missing),
        every value read by ``medserve.data.values``.

        Raises SchemaError naming the column and the first bad row when a value does not
        fit: "row N" is the Nth data row of ``frame`` (1-based, the header not counted), or
        ``row_numbers[i]`` for its ith row when given (a shuffled split of a table names its
        rows as the table numbers them). Unseen levels pass through (the encoder ignores
        them; ``unseen_level`` finds them for the channels that refuse them)."""
        self._require_features(frame)
        prepared = {}
        for spec in self.features:
            reader = ValueReader.of(spec)
            dtype = np.float64 if reader.numeric else object
            values = _read_column(reader, frame[spec.name], row_numbers)
            prepared[spec.name] = pd.Series(values, index=frame.index, dtype=dtype)
        return pd.DataFrame(prepared, index=frame.index)

    def unseen_rows(self, frame: pd.DataFrame) -> dict[str, list[int]]:
        """Per level feature, the rows of ``frame`` (positions) holding a level that training
        never saw; only the features that have some."""
        self._require_features(frame)
        found: dict[str, list[int]] = {}
        for spec in self.features:
            reader = ValueReader.of(spec)
            if reader.numeric or not reader.known:
                continue
            levels = _read_column(reader, frame[spec.name])
            unseen = [i for i, level in enumerate(levels) if _is_unseen(reader, level)]
            if unseen:
                found[spec.name] = unseen
        return found

    def unseen_level(self, frame: pd.DataFrame) -> str | None:
        """The first level in ``frame`` that training never saw, said for the person who
        sent it (row, column, the known levels); None when every level was seen."""
        for name, unseen in self.unseen_rows(frame).items():
            spec = self.column(name)
            if unseen:
                row = unseen[0]
                value = frame[spec.name].iloc[row]
                levels = shown_levels(spec, withheld_columns(self))
                message = unseen_level_message(value, levels, "an empty cell")
                others = f"; {len(unseen)} rows of '{spec.name}' have such levels"
                return f"column '{spec.name}' row {row + 1}: {message}" + (
                    others if len(unseen) > 1 else ""
                )
        return None

    def _require_features(self, frame: pd.DataFrame) -> None:
        missing = [c.name for c in self.features if c.name not in frame.columns]
        if missing:
            raise SchemaError(
                f"missing column(s) {', '.join(repr(m) for m in missing)}; the model needs "
                f"{', '.join(self.feature_names)}"
            )


def _read_column(
    reader: ValueReader, values: pd.Series, row_numbers: Sequence[int] | None = None
) -> np.ndarray:
    """Floats for a number column, levels for a level column; SchemaError at a bad value,
    naming its row (1-based position, or its entry of ``row_numbers``)."""
    try:
        return reader.numbers(values) if reader.numeric else reader.levels(values)
    except UnreadableValue as error:
        position = error.position or 0
        row = int(row_numbers[position]) if row_numbers is not None else position + 1
        raise SchemaError(f"column '{reader.name}' row {row}: {error}") from None


def _is_unseen(reader: ValueReader, level: object) -> bool:
    return isinstance(level, str) and reader.unseen(level)


def category_text(values: pd.Series) -> pd.Series:
    """Levels as stripped strings (True → 'True', 2.0 → '2'), blank kept as NaN, with no
    column's tokens or levels applied (for describing a column). Value by value, so a
    record reads the same whatever else is in its batch."""
    return values.map(lambda value: level_text(value) or np.nan).astype(object)

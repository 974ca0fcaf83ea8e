"""The Schema: per column a type and a role, inferred from data, overridable, and used
to turn raw records into the typed frame every model pipeline starts from."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from medserve.data.outcome import Outcome
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

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Raw records → the typed feature frame (float numbers, string levels, NaN missing).

        Raises SchemaError naming the column and the first bad row when a value does not
        fit; unseen categories pass through (the encoder ignores them)."""
        missing = [c.name for c in self.features if c.name not in frame.columns]
        if missing:
            raise SchemaError(
                f"missing column(s) {', '.join(repr(m) for m in missing)}; the model needs "
                f"{', '.join(self.feature_names)}"
            )
        prepared = {}
        for spec in self.features:
            values = frame[spec.name]
            if spec.numeric_encoded:
                prepared[spec.name] = _as_numbers(values, spec)
            else:
                prepared[spec.name] = _as_levels(values, spec)
        return pd.DataFrame(prepared, index=frame.index)


def _as_numbers(values: pd.Series, spec: ColumnSpec) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        numbers = values.astype(float)
    else:
        numbers = pd.to_numeric(values, errors="coerce")
        bad = numbers.isna().to_numpy() & values.notna().to_numpy()
        if bad.any():
            text = values.astype(str).str.strip()
            blank = text.isin(["", "nan", "NaN", "NA", "None"]).to_numpy()
            bad &= ~blank
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise SchemaError(
                    f"column '{spec.name}' row {row + 1}: '{values.iloc[row]}' is not a number"
                )
        numbers = numbers.astype(float)
    infinite = np.isinf(numbers.to_numpy())
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        raise SchemaError(
            f"column '{spec.name}' row {row + 1}: '{values.iloc[row]}' is not a finite number"
        )
    if spec.missing_tokens:
        tokens = pd.to_numeric(pd.Series(spec.missing_tokens), errors="coerce").dropna()
        numbers = numbers.mask(numbers.isin(tokens.tolist()))
    return numbers


def _level_of(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return np.nan
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, int | float | np.integer | np.floating):
        return f"{value:g}"
    return str(value).strip()


def category_text(values: pd.Series) -> pd.Series:
    """Levels as stripped strings (True → 'True', 2.0 → '2'), missing kept as NaN.

    Value by value, so a record reads the same whatever else is in its batch."""
    return values.map(_level_of).astype(object)


def _as_levels(values: pd.Series, spec: ColumnSpec) -> pd.Series:
    text = category_text(values)
    if spec.missing_tokens:
        text = text.mask(text.isin(spec.missing_tokens))
    if spec.categories:
        # Match levels regardless of case (TRUE, true and True are the same answer).
        lookup = {level.lower(): level for level in spec.categories}
        text = text.map(lambda v: v if pd.isna(v) else lookup.get(v.lower(), v))
    return text.astype(object)

"""Encoding JSON records the way the fitted preprocess step would, without pandas.

The step's fitted parameters (medians, missing indicators, scaler, one-hot levels) become
plain arrays and lookups; ``Encoding.matrix`` then builds the estimator's input matrix.
Families whose estimator reads that matrix (``Family.compile``) score on top of it.
Values are read by ``medserve.data.values``, in its batch forms (``NumberColumns``, and
``ValueReader.level`` once per distinct text of a batch)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from medserve.data.schema import ColumnSpec, Schema
from medserve.data.values import NumberColumns, UnreadableValue, ValueReader, shown
from medserve.errors import SchemaError
from medserve.modeling.model import TrainedModel

Record = Mapping[str, object]
NUMERIC_STEP_ORDERS = ([], ["impute"], ["scale"], ["impute", "scale"])


@dataclass(frozen=True)
class NumericBlock:
    """The fitted numeric step: median imputation with missing indicators, then scaling.

    Each part is optional (LightGBM keeps NaN and raw units)."""

    names: tuple[str, ...]
    columns: NumberColumns  # how each column's values are read
    offset: int
    kept: np.ndarray  # columns the imputer keeps (it drops any that were empty in training)
    fill: np.ndarray | None  # imputation value of each kept column; None: NaN stays
    indicators: np.ndarray  # columns that get a missing indicator, in output order
    mean: np.ndarray | None
    scale: np.ndarray | None

    @property
    def width(self) -> int:
        return len(self.kept) + len(self.indicators)

    def read(self, records: Sequence[Record]) -> np.ndarray:
        """The raw numbers, a column per feature, NaN where not measured (or a missing token)."""
        values = [record.get(name) for record in records for name in self.names]
        try:
            return self.columns.read(values)
        except UnreadableValue as error:
            record, field = divmod(error.position or 0, len(self.names))
            raise _value_error(record, self.names[field], error) from None

    def encode(self, numbers: np.ndarray) -> np.ndarray:
        """The same arithmetic, in the same order, as SimpleImputer then StandardScaler."""
        missing = np.isnan(numbers)
        encoded = numbers[:, self.kept]
        if self.fill is not None:
            encoded = np.where(missing[:, self.kept], self.fill, encoded)
            encoded = np.hstack([encoded, missing[:, self.indicators].astype(np.float64)])
        if self.mean is not None:
            encoded = encoded - self.mean
        if self.scale is not None:
            encoded = encoded / self.scale
        return encoded


@dataclass(frozen=True)
class LevelBlock:
    """One level feature's one-hot columns: missing → the "(missing)" level, unseen → none."""

    name: str
    reader: ValueReader
    column: dict[str, int]  # level as spelled in training → its column in the matrix
    missing_column: int | None

    def columns_of(self, values: list[object]) -> list[int | None]:
        """The matrix column set to 1 for each value; None sets none (an unseen level)."""
        columns: list[int | None] = []
        known: dict[str, int | None] = {}  # a batch repeats few distinct texts
        for index, value in enumerate(values):
            if type(value) is str:
                if value not in known:
                    known[value] = self._column_of(index, value)
                columns.append(known[value])
            else:
                columns.append(self._column_of(index, value))
        return columns

    def _column_of(self, index: int, value: object) -> int | None:
        try:
            level = self.reader.level(value)
        except UnreadableValue as error:
            raise _value_error(index, self.name, error) from None
        if level is None:
            return self.missing_column
        return self.column.get(level)


@dataclass(frozen=True)
class Encoding:
    """The fitted ColumnTransformer as plain arrays and lookups, in its output column order."""

    numeric: NumericBlock | None
    levels: tuple[LevelBlock, ...]
    width: int

    def matrix(self, records: Sequence[Record]) -> np.ndarray:
        encoded = np.zeros((len(records), self.width))
        if self.numeric is not None:
            block = self.numeric
            numbers = block.encode(block.read(records))
            encoded[:, block.offset : block.offset + block.width] = numbers
        for level in self.levels:
            columns = level.columns_of([record.get(level.name) for record in records])
            for index, column in enumerate(columns):
                if column is not None:
                    encoded[index, column] = 1.0
        return encoded


def records_frame(schema: Schema, records: Sequence[Record]) -> pd.DataFrame:
    """The records as the raw-record DataFrame the reference pipeline takes."""
    return pd.DataFrame([dict(record) for record in records], columns=schema.feature_names)


def checked_records(records: Sequence[Record]) -> Sequence[Record]:
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise SchemaError(f"record {index}: {shown(record)} is not an object of field values")
    return records


def _value_error(index: int, name: str, error: UnreadableValue) -> SchemaError:
    return SchemaError(f"record {index}, field '{name}': {error}")


def encoding_of(model: TrainedModel) -> Encoding | None:
    """The fitted preprocess step as an Encoding, or None where it holds anything else."""
    preprocess = model.pipeline.named_steps.get("preprocess")
    if not isinstance(preprocess, ColumnTransformer):
        return None
    specs = {spec.name: spec for spec in model.schema.features}
    numeric: NumericBlock | None = None
    levels: list[LevelBlock] = []
    offset = 0
    for name, step, columns in preprocess.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        if not all(isinstance(c, str) and c in specs for c in columns):
            return None
        if name == "numeric" and numeric is None:
            numeric = _numeric_block(step, [specs[c] for c in columns], offset)
            if numeric is None:
                return None
            offset += numeric.width
        elif name == "levels" and not levels:
            found = _level_blocks(step, [specs[c] for c in columns], offset)
            if found is None:
                return None
            blocks, offset = found
            levels.extend(blocks)
        else:
            return None
    return Encoding(numeric, tuple(levels), offset)


def _numeric_block(step: object, specs: list[ColumnSpec], offset: int) -> NumericBlock | None:
    if _is_identity(step):
        parts: dict[str, object] = {}
    elif isinstance(step, Pipeline):
        parts = dict(step.steps)
    else:
        return None
    if list(parts) not in NUMERIC_STEP_ORDERS:
        return None
    imputer, scaler = parts.get("impute"), parts.get("scale")
    columns = np.arange(len(specs))
    kept, fill, indicators = columns, None, np.arange(0)
    if imputer is not None:
        if not isinstance(imputer, SimpleImputer) or not _is_nan(imputer.missing_values):
            return None
        statistics = np.asarray(imputer.statistics_, dtype=np.float64)
        if not imputer.keep_empty_features:
            kept = np.flatnonzero(~np.isnan(statistics))
        fill = statistics[kept]
        if imputer.indicator_ is not None:
            indicators = np.asarray(imputer.indicator_.features_, dtype=np.intp)
    if scaler is not None and not isinstance(scaler, StandardScaler):
        return None
    return NumericBlock(
        names=tuple(spec.name for spec in specs),
        columns=NumberColumns.of([ValueReader.of(spec) for spec in specs]),
        offset=offset,
        kept=kept,
        fill=fill,
        indicators=indicators,
        mean=scaler.mean_ if scaler is not None and scaler.with_mean else None,
        scale=scaler.scale_ if scaler is not None and scaler.with_std else None,
    )


def _level_blocks(
    step: object, specs: list[ColumnSpec], offset: int
) -> tuple[list[LevelBlock], int] | None:
    """The one-hot blocks and the offset after them."""
    if not isinstance(step, Pipeline) or [name for name, _ in step.steps] != ["impute", "onehot"]:
        return None
    imputer, encoder = step.named_steps["impute"], step.named_steps["onehot"]
    if not (
        isinstance(imputer, SimpleImputer)
        and imputer.strategy == "constant"
        and _is_nan(imputer.missing_values)
        and isinstance(encoder, OneHotEncoder)
        and encoder.handle_unknown == "ignore"
        and encoder.drop_idx_ is None
        and encoder.min_frequency is None
        and encoder.max_categories is None
    ):
        return None
    blocks = []
    for spec, categories in zip(specs, encoder.categories_, strict=True):
        column = {str(level): offset + i for i, level in enumerate(categories)}
        blocks.append(
            LevelBlock(
                name=spec.name,
                reader=ValueReader.of(spec),
                column=column,
                missing_column=column.get(str(imputer.fill_value)),
            )
        )
        offset += len(categories)
    return blocks, offset


def _is_identity(step: object) -> bool:
    """True for "passthrough", which a fitted ColumnTransformer holds as a FunctionTransformer."""
    if isinstance(step, str):
        return step == "passthrough"
    return isinstance(step, FunctionTransformer) and step.func is None


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)

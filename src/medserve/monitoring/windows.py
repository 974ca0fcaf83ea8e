"""Counts of served records in a reference profile's bins: the only thing monitoring keeps
of live traffic. A batch's counts are integers per bin, per level, missing and unseen, so
windows merge by adding and no value outlives the request that carried it."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medserve.data.schema import Schema
from medserve.data.values import NumberColumns, UnreadableValue, ValueReader
from medserve.errors import DataError
from medserve.monitoring.profile import FeatureProfile, ReferenceProfile, bin_index


def empty_counts(profile: ReferenceProfile) -> dict[str, Any]:
    """The counts of a window that has seen nothing yet, shaped by ``profile``."""
    return {
        "n": 0,
        "features": {
            name: {"bins": [0] * feature.bins, "missing": 0, "unseen": 0}
            for name, feature in profile.features.items()
        },
        "risk": [0] * (len(profile.risk_edges) + 1),
        "risk_sum": 0.0,
    }


def batch_counts(
    profile: ReferenceProfile,
    schema: Schema,
    records: Sequence[Mapping[str, Any]],
    risks: Sequence[float],
) -> dict[str, Any]:
    """One batch of served records and their predicted risks, counted in the profile's bins:
    ``{"n", "features": {name: {"bins", "missing", "unseen"}}, "risk", "risk_sum"}``.

    ``bins`` has one entry per numeric bin or training level; a level training never saw
    counts in ``unseen``, a missing value in ``missing``. A value that cannot be read counts
    as missing: this runs after the response, where raising would help nobody."""
    if len(risks) != len(records):
        raise DataError(f"{len(risks)} risks for {len(records)} records; pass one per record")
    features: dict[str, dict[str, Any]] = {}
    numeric = [f for f in profile.features.values() if f.kind == "numeric"]
    if numeric:
        readers = [_reader(schema, feature) for feature in numeric]
        table = _read_numbers(readers, [[r.get(f.name) for f in numeric] for r in records])
        for j, feature in enumerate(numeric):
            features[feature.name] = _number_counts(feature, table[:, j])
    for feature in profile.features.values():
        if feature.kind == "levels":
            reader = _reader(schema, feature)
            values = [record.get(feature.name) for record in records]
            features[feature.name] = _level_counts(feature, reader, values)
    risk = np.asarray(risks, dtype=np.float64)
    risk = risk[np.isfinite(risk)]
    width = len(profile.risk_edges) + 1
    risk_bins = np.bincount(bin_index(profile.risk_edges, risk), minlength=width)
    return {
        "n": len(records),
        "features": {name: features[name] for name in profile.features},
        "risk": [int(count) for count in risk_bins],
        "risk_sum": float(risk.sum()),
    }


def merge_counts(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two windows' counts added bin by bin; either may be empty (``{}``)."""
    if not a:
        return _copy(b)
    if not b:
        return _copy(a)
    features = {}
    for name in dict.fromkeys([*a.get("features", {}), *b.get("features", {})]):
        left, right = a["features"].get(name), b["features"].get(name)
        if left is None or right is None:
            features[name] = _copy(left or right)
            continue
        features[name] = {
            "bins": _added(left["bins"], right["bins"], f"feature '{name}'"),
            "missing": left["missing"] + right["missing"],
            "unseen": left["unseen"] + right["unseen"],
        }
    return {
        "n": a["n"] + b["n"],
        "features": features,
        "risk": _added(a["risk"], b["risk"], "predicted risk"),
        "risk_sum": float(a.get("risk_sum", 0.0)) + float(b.get("risk_sum", 0.0)),
    }


def _reader(schema: Schema, feature: FeatureProfile) -> ValueReader:
    spec = next((spec for spec in schema.features if spec.name == feature.name), None)
    if spec is None:
        raise DataError(
            f"the reference profile has feature '{feature.name}' but the model's schema "
            "does not; rebuild the profile from this model's training table"
        )
    return ValueReader.of(spec)


def _read_numbers(readers: list[ValueReader], rows: list[list[object]]) -> np.ndarray:
    """(records, features) floats, NaN where missing or unreadable: all at once when every
    value reads, value by value when one does not."""
    values = [value for row in rows for value in row]
    try:
        return NumberColumns.of(readers).read(values).reshape(len(rows), len(readers))
    except (UnreadableValue, TypeError, ValueError, OverflowError):
        table = np.empty((len(rows), len(readers)))
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                table[i, j] = _number_or_nan(readers[j], value)
        return table


def _number_or_nan(reader: ValueReader, value: object) -> float:
    try:
        return reader.number(value)
    except (UnreadableValue, TypeError, ValueError, OverflowError):
        return math.nan


def _number_counts(feature: FeatureProfile, numbers: np.ndarray) -> dict[str, Any]:
    present = numbers[~np.isnan(numbers)]
    bins = np.bincount(bin_index(feature.edges, present), minlength=feature.bins)
    return {
        "bins": [int(count) for count in bins],
        "missing": len(numbers) - len(present),
        "unseen": 0,
    }


def _level_counts(
    feature: FeatureProfile, reader: ValueReader, values: list[object]
) -> dict[str, Any]:
    positions = {level: k for k, level in enumerate(feature.levels)}
    bins = [0] * feature.bins
    missing = unseen = 0
    for value in values:
        try:
            level = reader.level(value)
        except (UnreadableValue, TypeError, ValueError):
            level = None
        if level is None:
            missing += 1
        elif level in positions:
            bins[positions[level]] += 1
        else:
            unseen += 1
    return {"bins": bins, "missing": missing, "unseen": unseen}


def _added(left: Sequence[int], right: Sequence[int], what: str) -> list[int]:
    if len(left) != len(right):
        raise DataError(
            f"counts for {what} have {len(left)} and {len(right)} bins; windows of different "
            "reference profiles cannot be merged"
        )
    return [x + y for x, y in zip(left, right, strict=True)]


def _copy(counts: Mapping[str, Any] | None) -> dict[str, Any]:
    return copy.deepcopy(dict(counts)) if counts else {}

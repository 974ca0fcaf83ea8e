"""The reference profile: what the training table looked like, as aggregates only (bin
edges, shares per bin or level, share missing), so drift can be measured after go-live
without keeping a single training row.

One binning rule lives here (``bin_index``), used for the profile and for every window's
counts, so a value falls in the same bin on both sides."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from medserve.data.schema import ColumnSpec, Schema
from medserve.errors import DataError

# Quantile bins per numeric feature and for predicted risk (fewer when values repeat).
BINS = 10
# Feature types that carry no distribution to compare (free text, dates).
SKIPPED_TYPES = frozenset({"text", "datetime"})
# Decimal places kept for shares in the stored profile; significant digits for edges.
FRACTION_DECIMALS = 6
EDGE_DIGITS = 12

Kind = Literal["numeric", "levels"]


@dataclass(frozen=True)
class FeatureProfile:
    """One feature in training: numeric bins or training levels, and the share missing."""

    name: str
    kind: Kind
    edges: list[float]  # numeric: interior bin edges, increasing; [] for levels
    levels: list[str]  # levels: the training levels, in order; [] for numeric
    fractions: list[float]  # share of non-missing training values per bin / level
    missing: float  # share of training rows missing

    @property
    def bins(self) -> int:
        return len(self.edges) + 1 if self.kind == "numeric" else len(self.levels)


@dataclass(frozen=True)
class ReferenceProfile:
    """The training population as drift measures it: per-feature profiles and the
    distribution of the model's predicted risk on its own training rows."""

    n: int  # training rows profiled
    features: dict[str, FeatureProfile]
    risk_edges: list[float]  # interior edges of predicted-risk bins
    risk_fractions: list[float]
    risk_mean: float | None = None  # mean predicted risk in training

    def to_dict(self) -> dict[str, Any]:
        """The profile as a JSON-ready document (shares rounded, edges kept exact enough
        that a reloaded profile bins every value as this one does)."""
        return {
            "n": self.n,
            "features": {
                name: {
                    "kind": feature.kind,
                    "edges": [_edge(edge) for edge in feature.edges],
                    "levels": list(feature.levels),
                    "fractions": [_share(share) for share in feature.fractions],
                    "missing": _share(feature.missing),
                }
                for name, feature in self.features.items()
            },
            "risk": {
                "edges": [_edge(edge) for edge in self.risk_edges],
                "fractions": [_share(share) for share in self.risk_fractions],
                "mean": None if self.risk_mean is None else _share(self.risk_mean),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        """A profile from ``to_dict``'s document. Raises DataError naming what is wrong."""
        try:
            return _parse(data)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise DataError(
                f"the reference profile is malformed ({_said(error)}); rebuild it from the "
                "training table with build_profile"
            ) from None


def bin_index(edges: Sequence[float], values: np.ndarray) -> np.ndarray:
    """The bin of each (non-missing) value: bins are (-inf, e1], (e1, e2], …, (e_last, inf),
    so a value equal to an edge falls in the bin below it."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")


def quantile_edges(values: np.ndarray, bins: int = BINS) -> list[float]:
    """Interior edges at the deciles of ``values`` (non-missing), each an observed value
    and none repeated, none at the maximum (its bin above would be empty): a 0/1 column
    gets the edge 0 and two bins, a 0–3 column four."""
    if len(values) == 0:
        return []
    probabilities = np.arange(1, bins) / bins
    edges = np.unique(np.quantile(values, probabilities, method="inverted_cdf"))
    return [float(edge) for edge in edges if edge < values.max()]


def shares(counts: np.ndarray) -> list[float]:
    """Counts as shares of their total (all zero when there are none)."""
    total = counts.sum()
    return [float(count / total) if total else 0.0 for count in counts]


def profiled_features(schema: Schema) -> list[ColumnSpec]:
    """The features whose distribution drift compares: not text or dates, and level
    features only when their training levels are known."""
    return [
        spec
        for spec in schema.features
        if spec.type not in SKIPPED_TYPES and (spec.numeric_encoded or spec.categories)
    ]


def build_profile(schema: Schema, frame: pd.DataFrame, risk: np.ndarray) -> ReferenceProfile:
    """From the raw training frame (as read from the CSV, the feature columns present) and
    the model's predicted risk on it."""
    risk = np.asarray(risk, dtype=np.float64)
    if len(risk) != len(frame):
        raise DataError(
            f"{len(risk)} predicted risks for {len(frame)} training rows; pass the model's "
            "risk for every row of the training frame"
        )
    specs = profiled_features(schema)
    prepared = Schema(columns=specs).prepare(frame[[spec.name for spec in specs]])
    features = {spec.name: _feature_profile(spec, prepared[spec.name]) for spec in specs}
    present = risk[~np.isnan(risk)]
    risk_edges = quantile_edges(present)
    risk_counts = np.bincount(bin_index(risk_edges, present), minlength=len(risk_edges) + 1)
    return ReferenceProfile(
        n=len(frame),
        features=features,
        risk_edges=risk_edges,
        risk_fractions=shares(risk_counts),
        risk_mean=float(present.mean()) if len(present) else None,
    )


def _feature_profile(spec: ColumnSpec, values: pd.Series) -> FeatureProfile:
    missing = values.isna().to_numpy()
    missing_share = float(missing.mean()) if len(values) else 0.0
    if spec.numeric_encoded:
        numbers = values.to_numpy(dtype=np.float64)[~missing]
        edges = quantile_edges(numbers)
        counts = np.bincount(bin_index(edges, numbers), minlength=len(edges) + 1)
        return FeatureProfile(spec.name, "numeric", edges, [], shares(counts), missing_share)
    levels = list(spec.categories or [])
    counts = values[~missing].value_counts().reindex(levels, fill_value=0).to_numpy()
    return FeatureProfile(spec.name, "levels", [], levels, shares(counts), missing_share)


def _parse(data: Mapping[str, Any]) -> ReferenceProfile:
    if not isinstance(data, Mapping):
        raise TypeError("not an object")
    features = {}
    for name, item in dict(data["features"]).items():
        kind = item["kind"]
        if kind not in ("numeric", "levels"):
            raise ValueError(f"feature '{name}' has kind {kind!r}")
        feature = FeatureProfile(
            name=str(name),
            kind=kind,
            edges=_numbers(item.get("edges", []), f"feature '{name}' edges"),
            levels=[_text(level, f"feature '{name}' levels") for level in item.get("levels", [])],
            fractions=_numbers(item["fractions"], f"feature '{name}' fractions"),
            missing=_number(item["missing"], f"feature '{name}' missing"),
        )
        if len(feature.fractions) != feature.bins or (kind == "numeric" and feature.levels):
            raise ValueError(f"feature '{name}' has {len(feature.fractions)} fractions")
        _check_increasing(feature.edges, f"feature '{name}' edges")
        features[str(name)] = feature
    risk = data["risk"]
    edges = _numbers(risk["edges"], "risk edges")
    fractions = _numbers(risk["fractions"], "risk fractions")
    if len(fractions) != len(edges) + 1:
        raise ValueError(f"{len(fractions)} risk fractions for {len(edges)} risk edges")
    _check_increasing(edges, "risk edges")
    n = data["n"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n is {n!r}, not a count")
    mean = risk.get("mean")
    return ReferenceProfile(
        n=n,
        features=features,
        risk_edges=edges,
        risk_fractions=fractions,
        risk_mean=None if mean is None else _number(mean, "risk mean"),
    )


def _numbers(values: Any, where: str) -> list[float]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise TypeError(f"{where} is not a list")
    return [_number(value, where) for value in values]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where} holds {value!r}, not a finite number")
    return float(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{where} holds {value!r}, not text")
    return value


def _check_increasing(edges: list[float], where: str) -> None:
    if any(later <= earlier for earlier, later in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"{where} are not increasing")


def _said(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r} entry"
    return str(error)


def _share(share: float) -> float:
    return round(float(share), FRACTION_DECIMALS)


def _edge(edge: float) -> float:
    return float(f"{edge:.{EDGE_DIGITS}g}")

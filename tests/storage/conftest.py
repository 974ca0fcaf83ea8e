"""Fixtures for registry tests: a real SQLite file or a fresh PostgreSQL database per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from medserve.config import Settings
from medserve.storage import ModelVersion, Registry

RegisterModel = Callable[..., ModelVersion]


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    with Registry(settings) as opened:
        yield opened


@pytest.fixture(scope="session")
def fitted_model() -> LogisticRegression:
    """A tiny fitted classifier: small, picklable, and its predictions are easy to compare."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 3))
    outcome = (features[:, 0] + 0.5 * features[:, 1] > 0).astype(int)
    return LogisticRegression().fit(features, outcome)


@pytest.fixture
def register_model(fitted_model: LogisticRegression) -> RegisterModel:
    """Register with plausible metadata; tests pass only what they are about."""

    def register(
        registry: Registry, name: str, model: object = fitted_model, **overrides: Any
    ) -> ModelVersion:
        fields: dict[str, Any] = {
            "family": "logistic",
            "schema": {"columns": {"age": {"role": "feature", "type": "numeric"}}},
            "metrics": {"auroc": 0.81, "brier": 0.12},
            "threshold": 0.3,
            "params": {"C": 1.0},
            "lineage": {"data": "pima_diabetes.csv", "medserve": "0.1.0"},
            "data_sha256": "ab" * 32,
            "created_by": "tester",
        }
        fields.update(overrides)
        return registry.register(name, model, **fields)

    return register

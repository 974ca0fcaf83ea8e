"""Shared fixtures: the bundled real datasets and an isolated medserve home."""

from __future__ import annotations

from pathlib import Path

import pytest

DATASETS = Path(__file__).resolve().parents[1] / "src" / "medserve" / "datasets"


@pytest.fixture(scope="session")
def heart_csv() -> Path:
    return DATASETS / "heart_disease_uci.csv"


@pytest.fixture(scope="session")
def pima_csv() -> Path:
    return DATASETS / "pima_diabetes.csv"

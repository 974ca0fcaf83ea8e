"""Fixtures for de-identification: a synthetic identified table and an isolated home."""

from __future__ import annotations

from pathlib import Path

import pytest

from deid.synthetic import Identified, make_identified


@pytest.fixture(scope="session")
def identified() -> Identified:
    """200 admissions of ~133 Faker patients, every planted identifier recorded."""
    return make_identified(rows=200, seed=7)


@pytest.fixture
def identified_csv(tmp_path: Path, identified: Identified) -> Path:
    path = tmp_path / "identified.csv"
    identified.frame.to_csv(path, index=False)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDSERVE_MASTER_KEY", raising=False)
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    return tmp_path / "home"


@pytest.fixture
def fake():
    """Faker with a seed of its own, so inputs differ from the synthetic table's."""
    from faker import Faker

    generator = Faker("en_US")
    generator.seed_instance(2024)
    return generator

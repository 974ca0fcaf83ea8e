"""Shared fixtures: the bundled real datasets and an isolated medserve home."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from sqlalchemy import Engine

from medserve.config import Settings
from medserve.data import Schema, infer_schema, read_table
from medserve.storage import Registry

DATASETS = Path(__file__).resolve().parents[1] / "src" / "medserve" / "datasets"


@pytest.fixture(scope="session")
def heart_csv() -> Path:
    return DATASETS / "heart_disease_uci.csv"


@pytest.fixture(scope="session")
def pima_csv() -> Path:
    return DATASETS / "pima_diabetes.csv"


POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_ADMIN_DB = "test"


def _admin_connection(user: str) -> psycopg.Connection:
    return psycopg.connect(
        host=POSTGRES_HOST,
        port=POSTGRES_PORT,
        user=user,
        dbname=POSTGRES_ADMIN_DB,
        autocommit=True,
        connect_timeout=3,
    )


@pytest.fixture(scope="session")
def postgres_user() -> str:
    """A role that may create databases on the local server (trust auth), or skip."""
    failures = []
    for user in ("postgres", "root"):
        try:
            with _admin_connection(user):
                return user
        except psycopg.Error as error:
            failures.append(f"{user}: {str(error).strip().splitlines()[0]}")
    pytest.skip(
        f"PostgreSQL at {POSTGRES_HOST}:{POSTGRES_PORT}/{POSTGRES_ADMIN_DB} is unreachable "
        f"({'; '.join(failures)})"
    )


@pytest.fixture
def postgres_url(postgres_user: str) -> Iterator[str]:
    """The URL of a throwaway PostgreSQL database, dropped after the test."""
    database = f"medserve_t_{uuid.uuid4().hex[:8]}"
    with _admin_connection(postgres_user) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        yield f"postgresql+psycopg://{postgres_user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{database}"
    finally:
        with _admin_connection(postgres_user) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None (SQLite under the home directory) or the URL of a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    """A fresh medserve home, on SQLite or on a throwaway PostgreSQL database."""
    return Settings(home=tmp_path / "home", database_url=database_url)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """The migrated metadata database of ``settings``."""
    with Registry(settings) as registry:
        yield registry.engine


@pytest.fixture(scope="session")
def heart(heart_csv: Path) -> pd.DataFrame:
    return read_table(heart_csv)


@pytest.fixture(scope="session")
def heart_schema(heart: pd.DataFrame) -> Schema:
    return infer_schema(heart, target="num", positive_if=">0")


@pytest.fixture(scope="session")
def ray_local() -> Iterator[object]:
    """One small local Ray (2 CPUs) for every test marked ``ray``, started on first use and
    stopped at the end of the session; the ``ray`` module."""
    ray = pytest.importorskip("ray", reason="the extra medserve[ray] is not installed")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _redis_test_url() -> str:
    """Database 15 of the Redis on 127.0.0.1:6379, or one below per parallel test worker
    (pytest-xdist's gw0, gw1, …), so that no worker empties another's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return f"redis://127.0.0.1:6379/{15 - int(worker.removeprefix('gw') or 0) % 8}"


@pytest.fixture
def redis_url() -> str:
    """A Redis database for this test (``_redis_test_url``), emptied for it, for tests
    marked ``redis``."""
    import redis

    url = _redis_test_url()
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    client.flushdb()
    client.close()
    return url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``), every test that starts or joins Ray runs
    on one worker: one local Ray for them all, as in a serial run."""
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.xdist_group("ray"))

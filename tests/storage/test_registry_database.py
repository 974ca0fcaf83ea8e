"""Opening the registry: migrations on SQLite and PostgreSQL, and errors people can act on."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from medserve.config import Settings
from medserve.errors import RegistryError
from medserve.storage import Registry


def test_opening_migrates_to_the_newest_schema(registry: Registry) -> None:
    inspector = inspect(registry.engine)
    assert "model_versions" in inspector.get_table_names()
    with registry.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).all() == [
            ("0006",)
        ]


def test_sqlite_database_uses_write_ahead_logging(tmp_path: Path) -> None:
    with Registry(Settings(home=tmp_path / "home")) as registry:
        with registry.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert (tmp_path / "home" / "medserve.db").exists()


def test_concurrent_opens_of_a_fresh_database_migrate_once(settings: Settings) -> None:
    workers = 4
    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    def open_registry() -> None:
        try:
            start.wait()
            Registry(settings).close()
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=open_registry) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with Registry(settings) as registry, registry.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_unreachable_database_names_the_url_without_its_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://clinician:s3cret@127.0.0.1:1/medserve"
    with pytest.raises(RegistryError) as raised:
        Registry(Settings(home=tmp_path / "home", database_url=url))
    message = str(raised.value)
    assert "s3cret" not in message
    assert "postgresql+psycopg://clinician:***@127.0.0.1:1/medserve" in message
    assert "\n" not in message


def test_unopenable_sqlite_file_is_a_registry_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    url = f"sqlite:///{blocker}/medserve.db"
    with pytest.raises(RegistryError, match="cannot open the registry database sqlite:///"):
        Registry(Settings(home=tmp_path / "home", database_url=url))


def test_unknown_database_driver_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot open the registry database"):
        Registry(Settings(home=tmp_path / "home", database_url="nosuchdb://host/db"))

"""What medserve writes is readable by its owner only, whatever the umask or the mode of a
home that already exists; a home others can read is reported, not silently used."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from medserve.config import Settings
from medserve.core.files import create_private
from medserve.data import write_table
from medserve.storage import ModelVersion, Registry

RegisterModel = Callable[..., ModelVersion]  # the register_model fixture


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_home(tmp_path: Path) -> Iterator[Path]:
    """A home that already exists, group- and world-readable, under a permissive umask."""
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    previous = os.umask(0o022)
    yield home
    os.umask(previous)


def test_the_sqlite_database_and_its_wal_are_private_in_an_open_home(
    open_home: Path, register_model: RegisterModel, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="medserve.storage"):
        registry = Registry(Settings(home=open_home))
    with registry:
        registered: ModelVersion = register_model(registry, "sepsis")
        assert registry.load(registered) is not None
        database = open_home / "medserve.db"
        companions = [database.with_name(database.name + s) for s in ("-wal", "-shm")]
        assert [p for p in companions if p.exists()] == companions  # WAL mode, in use
        assert {p.name: mode(p) for p in [database, *companions]} == {
            "medserve.db": 0o600,
            "medserve.db-wal": 0o600,
            "medserve.db-shm": 0o600,
        }
    assert f"medserve home {open_home} is accessible to other users (mode 755)" in caplog.text
    assert f"chmod 700 {open_home}" in caplog.text


def test_a_loose_database_file_is_reported_and_left_as_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path / "home")
    Registry(settings).close()
    database = settings.home / "medserve.db"
    os.chmod(database, 0o644)

    with caplog.at_level(logging.WARNING, logger="medserve.storage"):
        Registry(settings).close()

    assert f"registry database {database} is accessible to other users (mode 644)" in caplog.text
    assert "medserve home" not in caplog.text  # the home itself is 0700
    assert mode(database) == 0o644


def test_the_command_line_warns_about_an_open_home(open_home: Path) -> None:
    environment = {**os.environ, "MEDSERVE_HOME": str(open_home)}
    environment.pop("MEDSERVE_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "medserve", "models", "list"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"medserve home {open_home} is accessible to other users (mode 755)" in result.stderr
    assert mode(open_home / "medserve.db") == 0o600


@pytest.mark.parametrize("name", ["scored.csv", "scored.tsv", "scored.parquet"])
def test_write_table_writes_a_private_file_even_over_an_open_one(
    open_home: Path, name: str
) -> None:
    frame = pd.DataFrame({"risk": [0.1, 0.9], "label": [0, 1]})
    fresh, existing = open_home / f"fresh-{name}", open_home / name
    existing.write_text("older output")
    os.chmod(existing, 0o644)

    write_table(frame, fresh)
    write_table(frame, existing)

    assert mode(fresh) == mode(existing) == 0o600
    assert existing.read_bytes() == fresh.read_bytes()  # overwritten, not appended to


def test_create_private_without_tighten_leaves_an_existing_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "db"
    path.write_text("kept")
    os.chmod(path, 0o640)
    assert create_private(path, tighten=False) == path
    assert mode(path) == 0o640 and path.read_text() == "kept"

"""Migrating a registry's database on its own (``medserve db upgrade``): once per
deployment, before replicas that share it start; they find it at the newest revision and
never migrate themselves."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc as sa_exc

from medserve.core.files import DIR_MODE
from medserve.errors import RegistryError
from medserve.storage.database import (
    HEAD_REVISION,
    MigrationError,
    at_head,
    describe_url,
    migrate,
    one_line,
    open_engine,
    sqlite_path,
)


def upgrade_database(url: str) -> dict[str, Any]:
    """Bring the database at ``url`` to the newest migration: what was done, as
    ``{"database": <url, password masked>, "revision": ..., "migrated": bool}``;
    RegistryError (one line) when it cannot be reached or migrated."""
    engine = None
    try:
        database_file = sqlite_path(url)
        if database_file is not None:  # the embedded default: its home may not exist yet
            database_file.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        engine = open_engine(url)
        was_there = at_head(engine)
        if not was_there:
            migrate(engine)
    except (sa_exc.SQLAlchemyError, MigrationError, OSError) as error:
        raise RegistryError(
            f"cannot migrate the registry database {describe_url(url)}: {one_line(error)}"
        ) from error
    finally:
        if engine is not None:
            engine.dispose()
    return {"database": describe_url(url), "revision": HEAD_REVISION, "migrated": not was_there}

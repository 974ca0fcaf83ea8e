"""Alembic environment for the registry schema.

medserve runs migrations itself (``medserve.storage.database.migrate``) and
hands over a live connection in ``config.attributes["connection"]``; the URL
fallback only serves ad-hoc ``alembic`` use during development.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from medserve.storage.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("medserve registry migrations run online only")
run_migrations_online()

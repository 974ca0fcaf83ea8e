"""The one Alembic history builds exactly the tables ``storage/tables.py`` declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData

from medserve.storage.tables import Base


def test_migrated_database_matches_the_declared_tables(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        # The comparison sees the migrated tables: against no tables it would drop them all.
        dropped = {diff[1].name for diff in compare_metadata(context, MetaData())}
        assert {"model_versions", "api_keys", "audit_log", "audit_head"} <= dropped

        assert compare_metadata(context, Base.metadata) == []

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


def test_the_recorded_head_is_the_newest_migration_script(engine: Engine) -> None:
    """A database at HEAD_REVISION opens without running Alembic: the constant must name
    the newest script, or a database one migration behind would not be upgraded."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from medserve.storage.database import HEAD_REVISION, MIGRATIONS_DIR, at_head

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]
    assert at_head(engine)

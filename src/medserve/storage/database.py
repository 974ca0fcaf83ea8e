"""The registry's database: engine set-up, Alembic migrations, write locks.

Everything dialect-specific lives here, so ``store`` reads the same on SQLite
(the embedded default) and PostgreSQL (shared by replicas).

A PostgreSQL server that goes away while medserve runs is an outage, not a bug: every
statement then fails with RegistryError (HTTP 503, a one-line message), whoever issued
it, instead of the driver's own error (a 500), and no connection attempt waits longer
than the connect timeout. See ``open_engine``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from medserve.core.files import create_private
from medserve.errors import RegistryError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest migration (tests/storage/test_migrations.py holds it to the scripts): a
# database already there opens without importing Alembic (~0.3 s of a server's start).
HEAD_REVISION = "0006"
SQLITE_BUSY_TIMEOUT_S = 30
# How long a PostgreSQL connection attempt may take (libpq ``connect_timeout``) unless the
# URL sets its own: a server that vanished without a reset would otherwise hold a request
# for the operating system's TCP timeout (minutes).
POSTGRES_CONNECT_TIMEOUT_S = 5


def open_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL (readers never block writers) and a busy timeout.

    A server database (PostgreSQL) gets: a pre-ping, so a connection the server dropped is
    replaced before use; a connect timeout; and, once it has answered, the outage rule
    (``_outages_are_registry_errors``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        _outages_are_registry_errors(engine)
        return engine
    database = sqlite_path(url)
    if database is not None:
        # Owner-only from the start; SQLite gives its -wal, -shm and -journal files the
        # database file's mode. An existing file keeps its mode (Registry warns if loose).
        create_private(database, tighten=False)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # With WAL, NORMAL commits without waiting on fsync: a commit survives the process
        # being killed (what the audit trail promises: its record is in the database before
        # the answer leaves), and the file is never corrupted; only an OS crash or power
        # loss can take back the last commits. PostgreSQL for stronger guarantees.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    return engine


def _outages_are_registry_errors(engine: Engine) -> None:
    """Once the database has answered, losing it raises RegistryError, wherever it happens.

    Losing it means: a connection attempt failed, or the server dropped a connection in
    use. Every module would otherwise have to turn the driver's error into one a user can
    act on, and one that forgets makes a 500 of an outage (the key lookup did). Before the
    first answer the driver's errors are left alone: a wrong URL or a server not started
    is for whoever opens the database to report, naming the URL (``Registry``). The
    message names neither host nor user (clients read it) and no option. The pool's
    pre-ping is left to do its work: a dead pooled connection is replaced, not reported.
    """
    answered = threading.Event()

    @event.listens_for(engine, "connect")
    def _answered(_dbapi_connection: Any, _record: Any) -> None:
        answered.set()

    @event.listens_for(engine, "handle_error")
    def _outage(context: ExceptionContext) -> None:
        if not answered.is_set() or context.is_pre_ping:
            return
        if context.is_disconnect:
            how = "the connection to it was lost"
        elif context.connection is None and isinstance(
            context.sqlalchemy_exception, OperationalError
        ):
            how = "no connection to it could be made"
        else:
            return
        # SQLAlchemy raises this in place of its own error, the driver's chained as cause,
        # after invalidating the broken connection as usual.
        raise RegistryError(
            f"the registry database does not answer ({how}): try again once it is back"
        )


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


class MigrationError(Exception):
    """Alembic could not bring the schema to the newest migration."""


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration; a no-op when it is already there.

    Runs in one transaction under the write lock, so replicas opening a fresh
    database at the same moment migrate it once.
    """
    if at_head(engine):
        return
    from alembic import command
    from alembic.config import Config
    from alembic.util.exc import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with engine.begin() as connection:
            lock_for_write(connection, "migrations")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except CommandError as error:
        raise MigrationError(str(error)) from error


def at_head(engine: Engine) -> bool:
    """True when the database records the newest migration (False for a new one)."""
    try:
        with engine.connect() as connection:
            found = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:
        return False
    return [row[0] for row in found] == [HEAD_REVISION]


def lock_for_write(connection: Connection, key: str) -> None:
    """Serialise writers on ``key`` until the current transaction ends.

    Must be the first statement of the transaction. SQLite takes its database
    write lock up front (BEGIN IMMEDIATE); PostgreSQL takes a transaction-scoped
    advisory lock on the key. Other databases rely on unique constraints alone.
    """
    dialect = connection.dialect.name
    if dialect == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"medserve.storage:{key}"},
        )


def describe_url(url: str) -> str:
    """The URL as safe to show: password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unparseable database URL)"


def one_line(error: BaseException) -> str:
    """The root cause of a database error on one line (drivers often spread it over several)."""
    cause = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return " ".join(lines) or type(cause).__name__

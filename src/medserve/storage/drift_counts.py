"""Windows of counts for drift, as the serving processes write them.

Each process (``writer``) keeps its own running counts of each window and replaces its
row on every write, so a write is idempotent and no two processes ever update the same
row; a window's counts are the sum over its writers' rows (``merge``, given by the
caller, knows how the counts add up)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy import exc as sa_exc

from medserve.errors import RegistryError
from medserve.storage.database import one_line
from medserve.storage.tables import DriftCountRow

Counts = dict[str, Any]
WindowKey = tuple[str, int, datetime]  # model, version, window start


class DriftCounts:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def save(self, writer: str, counts: Mapping[WindowKey, Counts]) -> None:
        """Replace ``writer``'s rows for each window of ``counts`` with its counts."""
        if not counts:
            return
        now = datetime.now(UTC)
        try:
            with self._engine.begin() as connection:
                for (model, version, start), window in counts.items():
                    connection.execute(
                        delete(DriftCountRow).where(
                            DriftCountRow.model == model,
                            DriftCountRow.model_version == version,
                            DriftCountRow.window_start == start,
                            DriftCountRow.writer == writer,
                        )
                    )
                    connection.execute(
                        DriftCountRow.__table__.insert(),
                        [
                            {
                                "model": model,
                                "model_version": version,
                                "window_start": start,
                                "writer": writer,
                                "counts": window,
                                "updated_at": now,
                            }
                        ],
                    )
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not store the drift counts: {one_line(error)}") from None

    def windows(
        self, model: str, since: datetime, merge: Callable[[Counts, Counts], Counts]
    ) -> dict[tuple[int, datetime], Counts]:
        """Each (version, window start) of ``model`` from ``since`` on, its writers' counts
        summed with ``merge``."""
        statement = (
            select(DriftCountRow.model_version, DriftCountRow.window_start, DriftCountRow.counts)
            .where(
                DriftCountRow.model == model, DriftCountRow.window_start >= since.astimezone(UTC)
            )
            .order_by(DriftCountRow.window_start)
        )
        found: dict[tuple[int, datetime], Counts] = {}
        try:
            with self._engine.connect() as connection:
                for version, start, counts in connection.execute(statement):
                    key = (version, start)
                    found[key] = merge(found.get(key, {}), counts)
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not read the drift counts: {one_line(error)}") from None
        return found

    def purge(self, before: datetime) -> int:
        """Remove the windows that started before ``before``; how many rows went."""
        try:
            with self._engine.begin() as connection:
                return connection.execute(
                    delete(DriftCountRow).where(DriftCountRow.window_start < before.astimezone(UTC))
                ).rowcount
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not purge the drift counts: {one_line(error)}") from None

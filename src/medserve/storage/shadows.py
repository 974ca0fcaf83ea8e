"""Shadow versions: per model name, at most one candidate scored silently beside the
production version (its risks logged, never answered)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, delete, select
from sqlalchemy import exc as sa_exc

from medserve.errors import RegistryError
from medserve.storage.database import one_line
from medserve.storage.tables import ShadowRow


class ShadowStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def set(self, model: str, version: int, by: str) -> None:
        """Make ``version`` the shadow of ``model`` (replacing any other)."""
        row = {"model": model, "model_version": version, "since": datetime.now(UTC), "set_by": by}
        try:
            with self._engine.begin() as connection:
                connection.execute(delete(ShadowRow).where(ShadowRow.model == model))
                connection.execute(ShadowRow.__table__.insert(), [row])
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not store the shadow: {one_line(error)}") from None

    def clear(self, model: str) -> int | None:
        """Stop shadowing ``model``; the version that was its shadow, or None."""
        current = self.get(model)
        try:
            with self._engine.begin() as connection:
                connection.execute(delete(ShadowRow).where(ShadowRow.model == model))
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not remove the shadow: {one_line(error)}") from None
        return None if current is None else current[0]

    def get(self, model: str) -> tuple[int, datetime] | None:
        """The shadow version of ``model`` and since when, or None."""
        statement = select(ShadowRow.model_version, ShadowRow.since).where(ShadowRow.model == model)
        try:
            with self._engine.connect() as connection:
                row = connection.execute(statement).one_or_none()
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not read the shadow: {one_line(error)}") from None
        return None if row is None else (row[0], row[1])

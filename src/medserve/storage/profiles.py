"""Reference profiles as the registry keeps them: one JSON document per model version
(monitoring/profile.py reads it). Aggregates of the training data only: per feature its
bin edges or levels, the share of rows in each and the share missing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy import exc as sa_exc

from medserve.errors import RegistryError
from medserve.storage.database import one_line
from medserve.storage.tables import ReferenceProfileRow


class ProfileStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def put(self, model: str, version: int, profile: dict[str, Any]) -> None:
        """Store ``profile`` as the reference of ``model`` version ``version`` (replacing one)."""
        row = {
            "model": model,
            "model_version": version,
            "profile": profile,
            "created_at": datetime.now(UTC),
        }
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    delete(ReferenceProfileRow).where(
                        ReferenceProfileRow.model == model,
                        ReferenceProfileRow.model_version == version,
                    )
                )
                connection.execute(ReferenceProfileRow.__table__.insert(), [row])
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(
                f"could not store the reference profile: {one_line(error)}"
            ) from None

    def get(self, model: str, version: int) -> dict[str, Any] | None:
        statement = select(ReferenceProfileRow.profile).where(
            ReferenceProfileRow.model == model, ReferenceProfileRow.model_version == version
        )
        try:
            with self._engine.connect() as connection:
                return connection.execute(statement).scalar_one_or_none()
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(
                f"could not read the reference profile: {one_line(error)}"
            ) from None

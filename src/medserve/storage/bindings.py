"""FHIR bindings as the registry keeps them: one document per model version and site.

The document is the binding as JSON (interop/fhir/binding.py reads it): codes, units and
windows, never a patient's value. Storing one for a version and site that has one
replaces it; the registry's own row for the version must exist."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy import exc as sa_exc

from medserve.errors import RegistryError
from medserve.storage.database import one_line
from medserve.storage.tables import FhirBindingRow


class BindingStore:
    """Read and write FHIR binding documents in the metadata database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def put(self, name: str, version: int, site: str, document: dict[str, Any], by: str) -> None:
        """Store ``document`` as the binding of ``name`` version ``version`` at ``site``."""
        row = {
            "name": name,
            "version": version,
            "site": site,
            "document": document,
            "created_at": datetime.now(UTC),
            "created_by": by,
        }
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    delete(FhirBindingRow).where(
                        FhirBindingRow.name == name,
                        FhirBindingRow.version == version,
                        FhirBindingRow.site == site,
                    )
                )
                connection.execute(FhirBindingRow.__table__.insert(), [row])
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not store the FHIR binding: {one_line(error)}") from None

    def get(self, name: str, version: int, site: str) -> dict[str, Any] | None:
        """The binding document of that version and site, or None."""
        statement = select(FhirBindingRow.document).where(
            FhirBindingRow.name == name,
            FhirBindingRow.version == version,
            FhirBindingRow.site == site,
        )
        try:
            with self._engine.connect() as connection:
                return connection.execute(statement).scalar_one_or_none()
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not read the FHIR binding: {one_line(error)}") from None

    def sites(self, name: str, version: int) -> list[str]:
        """The sites that have a binding for that version."""
        statement = (
            select(FhirBindingRow.site)
            .where(FhirBindingRow.name == name, FhirBindingRow.version == version)
            .order_by(FhirBindingRow.site)
        )
        try:
            with self._engine.connect() as connection:
                return list(connection.execute(statement).scalars())
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not read the FHIR bindings: {one_line(error)}") from None

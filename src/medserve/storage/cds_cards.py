"""CDS Hooks cards and the feedback on them, as monitoring will read them: which model
and version gave which risk and band on a card, and what the clinician did with it
(accepted or overridden, with coded reasons). No patient, no values, no free text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from medserve.errors import RegistryError
from medserve.storage.database import one_line
from medserve.storage.tables import CdsCardRow, CdsFeedbackRow


@dataclass(frozen=True, slots=True)
class IssuedCard:
    uuid: str
    service_id: str
    model: str
    model_version: int
    risk: float
    band: str
    issuer: str


@dataclass(frozen=True, slots=True)
class CardOutcome:
    """One feedback item: the card, accepted or overridden, when, and the coded reasons."""

    card_uuid: str
    outcome: str
    outcome_at: datetime
    reasons: list[dict[str, Any]]


class CardLog:
    """The cards this service issued and the feedback on them."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def issued(self, cards: Sequence[IssuedCard]) -> None:
        if not cards:
            return
        now = datetime.now(UTC)
        rows = [
            {
                "uuid": card.uuid,
                "service_id": card.service_id,
                "model": card.model,
                "model_version": card.model_version,
                "risk": card.risk,
                "band": card.band,
                "issuer": card.issuer,
                "issued_at": now,
            }
            for card in cards
        ]
        try:
            with self._engine.begin() as connection:
                connection.execute(CdsCardRow.__table__.insert(), rows)
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not record the cards: {one_line(error)}") from None

    def unknown(self, service_id: str, issuer: str, uuids: Sequence[str]) -> list[str]:
        """The uuids among ``uuids`` that this service never issued to ``issuer``."""
        statement = select(CdsCardRow.uuid).where(
            CdsCardRow.uuid.in_(list(uuids)),
            CdsCardRow.service_id == service_id,
            CdsCardRow.issuer == issuer,
        )
        try:
            with self._engine.connect() as connection:
                known = set(connection.execute(statement).scalars())
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not read the cards: {one_line(error)}") from None
        return [uuid for uuid in uuids if uuid not in known]

    def feedback(self, service_id: str, outcomes: Sequence[CardOutcome]) -> None:
        """Store each outcome once (the same card, outcome and time sent again is kept once)."""
        if not outcomes:
            return
        now = datetime.now(UTC)
        rows = [
            {
                "card_uuid": outcome.card_uuid,
                "service_id": service_id,
                "outcome": outcome.outcome,
                "reasons": outcome.reasons,
                "outcome_at": outcome.outcome_at.astimezone(UTC),
                "received_at": now,
            }
            for outcome in outcomes
        ]
        insert = postgresql_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        statement = insert(CdsFeedbackRow.__table__).on_conflict_do_nothing(
            index_elements=["card_uuid", "outcome", "outcome_at"]
        )
        try:
            with self._engine.begin() as connection:
                connection.execute(statement, rows)
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not store the feedback: {one_line(error)}") from None

    def outcomes(self, model: str) -> list[dict[str, Any]]:
        """Each feedback on ``model``'s cards, with the card's risk and band, oldest first."""
        statement = (
            select(
                CdsCardRow.model_version,
                CdsCardRow.risk,
                CdsCardRow.band,
                CdsFeedbackRow.outcome,
                CdsFeedbackRow.reasons,
                CdsFeedbackRow.outcome_at,
            )
            .join(CdsFeedbackRow, CdsFeedbackRow.card_uuid == CdsCardRow.uuid)
            .where(CdsCardRow.model == model)
            .order_by(CdsFeedbackRow.outcome_at)
        )
        try:
            with self._engine.connect() as connection:
                return [dict(row._mapping) for row in connection.execute(statement)]
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not read the feedback: {one_line(error)}") from None

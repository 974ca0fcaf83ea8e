"""The prediction log and the outcomes reported for it.

A row says which model and version answered (or, as a shadow, would have), when,
through which channel, and the risk, label and band; ``subject`` is a keyed pseudonym
of an id the caller sent, never the id. No feature value is ever stored here.

An outcome is stored once per prediction id: sending one again is refused, so a report
already counted can never be changed by a later one (a correction is a new decision a
person makes, not a resend)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, delete, func, select
from sqlalchemy import exc as sa_exc

from medserve.errors import DuplicateOutcome, RegistryError
from medserve.storage.database import one_line
from medserve.storage.tables import OutcomeRow, PredictionRow

# Ids looked up in one statement (SQLite's bound-parameter limit is far above this).
LOOKUP_CHUNK = 500


@dataclass(frozen=True, slots=True)
class LoggedPrediction:
    prediction_id: str
    model: str
    model_version: int
    shadow: bool
    made_at: datetime
    channel: str
    risk: float
    label: int
    band: str
    subject: str | None = None

    def row(self) -> dict[str, object]:
        return {
            "prediction_id": self.prediction_id,
            "model": self.model,
            "model_version": self.model_version,
            "shadow": self.shadow,
            "made_at": self.made_at,
            "channel": self.channel,
            "risk": self.risk,
            "label": self.label,
            "band": self.band,
            "subject": self.subject,
        }


@dataclass(frozen=True, slots=True)
class ReportedOutcome:
    prediction_id: str
    outcome: int
    observed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ScoredOutcome:
    """A prediction whose outcome arrived: what monitoring measures performance on."""

    prediction_id: str
    model_version: int
    shadow: bool
    made_at: datetime
    risk: float
    label: int
    outcome: int


class PredictionLog:
    """Read and write the prediction log and its outcomes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def write(self, predictions: Sequence[LoggedPrediction]) -> None:
        if not predictions:
            return
        try:
            with self._engine.begin() as connection:
                connection.execute(PredictionRow.__table__.insert(), [p.row() for p in predictions])
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not log the predictions: {one_line(error)}") from None

    def served_ids(self, model: str, prediction_ids: Sequence[str]) -> set[str]:
        """The ids among ``prediction_ids`` that ``model`` answered (not as a shadow)."""
        return self._found(
            PredictionRow.prediction_id,
            prediction_ids,
            PredictionRow.model == model,
            PredictionRow.shadow.is_(False),
        )

    def latest_for_subject(self, model: str, subject: str, at: datetime) -> str | None:
        """The id of ``model``'s latest served prediction for ``subject`` made at or
        before ``at``; None when there is none."""
        statement = (
            select(PredictionRow.prediction_id)
            .where(
                PredictionRow.model == model,
                PredictionRow.subject == subject,
                PredictionRow.shadow.is_(False),
                PredictionRow.made_at <= at.astimezone(UTC),
            )
            .order_by(PredictionRow.made_at.desc(), PredictionRow.id.desc())
            .limit(1)
        )
        try:
            with self._engine.connect() as connection:
                return connection.execute(statement).scalar_one_or_none()
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not read the prediction log: {one_line(error)}") from None

    def reported(self, prediction_ids: Sequence[str]) -> set[str]:
        """The ids among ``prediction_ids`` that already have an outcome."""
        return self._found(OutcomeRow.prediction_id, prediction_ids)

    def _found(self, column: Any, ids: Sequence[str], *conditions: Any) -> set[str]:
        """The ids among ``ids`` in ``column`` (where ``conditions`` hold), looked up in
        chunks of LOOKUP_CHUNK."""
        found: set[str] = set()
        unique = list(dict.fromkeys(ids))
        try:
            with self._engine.connect() as connection:
                for start in range(0, len(unique), LOOKUP_CHUNK):
                    chunk = unique[start : start + LOOKUP_CHUNK]
                    statement = select(column).where(column.in_(chunk), *conditions)
                    found.update(connection.execute(statement).scalars())
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not read the prediction log: {one_line(error)}") from None
        return found

    def add_outcomes(self, model: str, outcomes: Sequence[ReportedOutcome]) -> None:
        """Store every outcome or none: RegistryError (the whole batch refused) when one
        of them was reported already, by a concurrent call included."""
        now = datetime.now(UTC)
        rows = [
            {
                "prediction_id": o.prediction_id,
                "model": model,
                "outcome": o.outcome,
                "observed_at": None if o.observed_at is None else o.observed_at.astimezone(UTC),
                "received_at": now,
            }
            for o in outcomes
        ]
        if not rows:
            return
        try:
            with self._engine.begin() as connection:
                connection.execute(OutcomeRow.__table__.insert(), rows)
        except sa_exc.IntegrityError:
            raise DuplicateOutcome(
                "an outcome in this request was reported already, by another request"
            ) from None
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not store the outcomes: {one_line(error)}") from None

    def with_outcomes(self, model: str, since: datetime | None = None) -> list[ScoredOutcome]:
        """Every logged prediction of ``model`` (served and shadow) whose outcome arrived,
        oldest first."""
        statement = (
            select(
                PredictionRow.prediction_id,
                PredictionRow.model_version,
                PredictionRow.shadow,
                PredictionRow.made_at,
                PredictionRow.risk,
                PredictionRow.label,
                OutcomeRow.outcome,
            )
            .join(OutcomeRow, OutcomeRow.prediction_id == PredictionRow.prediction_id)
            .where(PredictionRow.model == model)
            .order_by(PredictionRow.made_at, PredictionRow.id)
        )
        if since is not None:
            statement = statement.where(PredictionRow.made_at >= since.astimezone(UTC))
        try:
            with self._engine.connect() as connection:
                return [ScoredOutcome(*row) for row in connection.execute(statement)]
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not read the outcomes: {one_line(error)}") from None

    def counts(self, model: str, since: datetime | None = None) -> dict[str, int]:
        """How many predictions ``model`` answered, shadows scored, and outcomes arrived."""
        made = [PredictionRow.model == model]
        if since is not None:
            made.append(PredictionRow.made_at >= since.astimezone(UTC))
        served = select(func.count()).where(and_(*made), PredictionRow.shadow.is_(False))
        shadowed = select(func.count()).where(and_(*made), PredictionRow.shadow.is_(True))
        reported = (
            select(func.count())
            .select_from(OutcomeRow)
            .join(PredictionRow, PredictionRow.prediction_id == OutcomeRow.prediction_id)
            .where(and_(*made), PredictionRow.shadow.is_(False))
        )
        try:
            with self._engine.connect() as connection:
                return {
                    "predictions": connection.execute(served).scalar_one(),
                    "shadow_predictions": connection.execute(shadowed).scalar_one(),
                    "outcomes": connection.execute(reported).scalar_one(),
                }
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not read the prediction log: {one_line(error)}") from None

    def purge(self, before: datetime) -> tuple[int, int]:
        """Remove the predictions made before ``before`` and their outcomes; returns how
        many of each were removed."""
        cutoff = before.astimezone(UTC)
        old = select(PredictionRow.prediction_id).where(PredictionRow.made_at < cutoff)
        try:
            with self._engine.begin() as connection:
                outcomes = connection.execute(
                    delete(OutcomeRow).where(OutcomeRow.prediction_id.in_(old))
                ).rowcount
                predictions = connection.execute(
                    delete(PredictionRow).where(PredictionRow.made_at < cutoff)
                ).rowcount
        except sa_exc.SQLAlchemyError as error:
            raise RegistryError(f"could not purge the prediction log: {one_line(error)}") from None
        return predictions, outcomes

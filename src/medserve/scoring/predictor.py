"""Records in, typed predictions out: the one scoring path every channel shares (REST
today; FHIR and CDS Hooks next). A request's record count is checked against the limit,
its records against the model's schema; then the fast scorer gives each risk, the
threshold its label, the service's bands its band, and, when asked, the explainer why."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from medserve.core.risk import RiskBands
from medserve.errors import Location, PayloadTooLarge, SchemaError
from medserve.explain import Explanations, explained
from medserve.scoring.catalog import ServedModel
from medserve.scoring.encoding import Record, records_frame
from medserve.scoring.validation import RecordProblem

# A request's problems are listed up to this many (the first is in the message).
MAX_PROBLEMS_LISTED = 100


class InvalidRecords(SchemaError):
    """Records that break the model's schema; carries every problem found (up to
    ``MAX_PROBLEMS_LISTED``), each naming the record, the field and the rule."""

    def __init__(self, problems: Sequence[RecordProblem]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        where = Location(record=first.record, field=first.field or None)
        super().__init__(first.message + more, location=where)
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a record got its risk: per raw input column contributions in ``space`` units;
    ``base_value + sum(contributions)`` is the record's log-odds."""

    space: str
    method: str
    base_value: float
    contributions: dict[str, float]
    summary: str
    # A model that reads notes: per note column, its sentences' effects (log-odds).
    sentences: dict[str, list[dict[str, object]]] | None = None
    sentences_method: str | None = None

    def to_dict(self) -> dict[str, object]:
        found: dict[str, object] = {
            "space": self.space,
            "method": self.method,
            "base_value": self.base_value,
            "contributions": self.contributions,
            "summary": self.summary,
        }
        if self.sentences is not None:
            found["sentences"] = self.sentences
            found["sentences_method"] = self.sentences_method
        return found


def new_prediction_id() -> str:
    """A fresh prediction id: 32 hex characters, random (uuid4), so it says nothing."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Prediction:
    """One record's answer: risk of the event, label at the model's threshold, risk band,
    and the id that outcome feedback and monitoring name it by (on every channel: REST's
    ``prediction_id``, the RiskAssessment's identifier, the card's uuid)."""

    risk: float
    label: int
    band: str
    explanation: Explanation | None = None
    prediction_id: str = field(default_factory=new_prediction_id)

    def to_dict(self) -> dict[str, object]:
        """As the REST API answers it."""
        answer: dict[str, object] = {
            "prediction_id": self.prediction_id,
            "risk": self.risk,
            "label": self.label,
            "risk_band": self.band,
        }
        if self.explanation is not None:
            answer["explanation"] = self.explanation.to_dict()
        return answer


class Predictor:
    """Scores raw records with a served model. ``bands_for(name, threshold)`` gives a
    model's risk bands (``Settings.bands_for``); ``max_records`` is the most records one
    call may carry."""

    def __init__(
        self, bands_for: Callable[[str | None, float], RiskBands], max_records: int
    ) -> None:
        self.bands_for = bands_for
        self.max_records = max_records

    def bands(self, served: ServedModel) -> RiskBands:
        """The bands ``served``'s risks are named by, on every channel."""
        return self.bands_for(served.version.name, served.version.threshold)

    def admit(self, n_records: int) -> None:
        """PayloadTooLarge when one call carries more records than the limit; channels call
        it before resolving the model, so an oversized request costs nothing more."""
        if n_records > self.max_records:
            raise PayloadTooLarge(
                f"{n_records} records in one request; the limit is "
                f"{self.max_records} (MEDSERVE_MAX_RECORDS)"
            )

    def predict(
        self, served: ServedModel, records: Sequence[Record], *, explain: bool = False
    ) -> list[Prediction]:
        """One prediction per record, in record order. InvalidRecords when any record breaks
        the schema; ExplanationUnavailable when ``explain`` and the model cannot be."""
        self.admit(len(records))
        self.validate(served, records)
        return self.scored(served, records, explain=explain)

    def validate(self, served: ServedModel, records: Sequence[Record]) -> None:
        """InvalidRecords when any record breaks the model's schema."""
        problems = served.validator.problems(records)
        if problems:
            raise InvalidRecords(problems[:MAX_PROBLEMS_LISTED])

    def scored(
        self, served: ServedModel, records: Sequence[Record], *, explain: bool = False
    ) -> list[Prediction]:
        """``predict`` for records already admitted and validated (scoring/batching.py
        checks each request's own records, then scores many requests' records at once)."""
        if explain:
            risk, explanations = _explained_risk(served, records)
        else:
            risk, explanations = served.scorer.risk(records), None
        threshold = served.version.threshold
        risks = risk.tolist()
        bands = self.bands(served).of(risks)
        if explanations is None:
            return [
                Prediction(r, int(r >= threshold), band)
                for r, band in zip(risks, bands, strict=True)
            ]
        why = explained(explanations, risks, bands, records, served.schema)
        return [
            Prediction(r, int(r >= threshold), band, Explanation(**explanation))
            for r, band, explanation in zip(risks, bands, why, strict=True)
        ]


def _explained_risk(
    served: ServedModel, records: Sequence[Record]
) -> tuple[np.ndarray, Explanations]:
    """Risk and explanations from one encoding of the records where the fast path allows."""
    explainer = served.explaining()
    scorer = served.scorer
    if scorer.exact_fast_path and explainer.takes_matrix:
        matrix = scorer.matrix(records)
        return scorer.risk_of_matrix(matrix), explainer.explain_matrix(matrix)
    frame = records_frame(served.schema, records)
    return scorer.risk(records), explainer.explain_frame(frame)

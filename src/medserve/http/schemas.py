"""Request and response bodies of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

JsonValue = str | float | int | bool | None
# The longest subject id a caller may send (only its keyed pseudonym is kept).
MAX_SUBJECT_CHARS = 256


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "records": [
                        {
                            "age": 63,
                            "sex": "Male",
                            "cp": "typical angina",
                            "trestbps": 145,
                            "chol": 233,
                            "fbs": True,
                            "restecg": "lv hypertrophy",
                            "thalch": 150,
                            "exang": False,
                            "oldpeak": 2.3,
                            "slope": "downsloping",
                            "ca": 0,
                            "thal": "fixed defect",
                            "dataset": "Cleveland",
                        }
                    ]
                }
            ]
        },
    )

    records: list[dict[str, JsonValue]] = Field(
        min_length=1,
        description="Raw records, one object per patient, keyed by the model's column names. "
        "null means 'not measured'.",
    )
    explain: bool = Field(
        default=False,
        description="Also return each record's explanation: per-column contributions, "
        "base value and a one-sentence summary.",
    )
    subjects: list[str | None] | None = Field(
        default=None,
        description="Optional: per record, an id of its patient (or encounter) in your "
        "system, so outcomes can later be sent by that id and time instead of by "
        "prediction id. Only a keyed pseudonym of it is kept; one per record, in order.",
    )

    @model_validator(mode="after")
    def _one_subject_per_record(self) -> PredictRequest:
        if self.subjects is not None:
            if len(self.subjects) != len(self.records):
                raise ValueError(
                    f"subjects has {len(self.subjects)} entries for {len(self.records)} "
                    "records: send one per record, in order (null where there is none)"
                )
            if any(s is not None and not 0 < len(s) <= MAX_SUBJECT_CHARS for s in self.subjects):
                raise ValueError(
                    f"each subject is a non-empty id of at most {MAX_SUBJECT_CHARS} characters"
                )
        return self


class SentenceEffect(BaseModel):
    sentence: str
    log_odds: float = Field(
        description="What the sentence adds to the log-odds: the note's less the note's "
        "without it (positive: it raised the risk)."
    )


class Explanation(BaseModel):
    space: Literal["log-odds", "probability"] = Field(
        description="The scale contributions add up on: base_value + Σ contributions = the "
        "record's risk in this space (log-odds: logit(risk))."
    )
    method: str = Field(description="How the contributions were computed.")
    base_value: float = Field(description="The output before any input is considered.")
    contributions: dict[str, float] = Field(
        description="Per raw input column (one-hot parts summed back), in `space` units."
    )
    summary: str = Field(description="One sentence a clinician can read.")
    sentences: dict[str, list[SentenceEffect]] | None = Field(
        default=None,
        description="A model that reads notes: per note field, its sentences, those that "
        "moved the risk most first (leave-one-sentence-out).",
    )
    sentences_method: str | None = Field(default=None, description="How `sentences` was found.")


class Prediction(BaseModel):
    prediction_id: str = Field(
        description="This prediction's id: send it back with the observed outcome "
        "(POST /v1/models/{name}/feedback)."
    )
    risk: float = Field(ge=0, le=1, description="Probability of the event.")
    label: Literal[0, 1] = Field(description="1 when risk ≥ the model's threshold.")
    risk_band: str
    explanation: Explanation | None = Field(
        default=None, description="Present when the request asked for explanations."
    )


class PredictResponse(BaseModel):
    model: str
    version: int
    request_id: str
    predictions: list[Prediction]


class RecordProblemOut(BaseModel):
    record: int | None = None
    field: str
    rule: str
    message: str


class ProblemLocation(BaseModel):
    """Where the problem is (only the parts that apply are sent)."""

    option: str | None = Field(default=None, description="The option or parameter at fault.")
    file: str | None = None
    column: str | None = None
    row: int | None = None
    record: int | None = Field(default=None, description="Index of the record in the request.")
    field: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details, with two extension members: ``code`` (what went wrong,
    stable for programs to test) and ``location`` (where, when it is known)."""

    type: str
    title: str
    status: int
    detail: str
    code: str | None = Field(default=None, description="A stable code for the problem.")
    location: ProblemLocation | None = None
    errors: list[RecordProblemOut] | None = None


class ColumnOut(BaseModel):
    name: str
    type: str
    role: str
    required: bool
    nullable: bool
    categories: list[str] | None = None
    training_range: list[float] | None = None
    accepted_range: list[float] | None = None
    missing_tokens: list[str] = []


class VersionSummary(BaseModel):
    name: str
    version: int
    stage: str
    family: str
    created_at: str
    threshold: float
    auroc: float | None = None


class VersionDetail(VersionSummary):
    outcome: str | None
    columns: list[ColumnOut]
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    params: dict[str, Any]


class ModelOut(BaseModel):
    name: str
    production_version: int | None
    versions: list[VersionSummary]


class ModelList(BaseModel):
    models: list[ModelOut]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {"application/problem+json": {}}}
    for status in (401, 403, 404, 409, 413, 422, 429, 503)
}

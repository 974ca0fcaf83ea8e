"""The dashboard's what-if page: a form made from the model's schema (each feature under
its clinical label and unit, numbers with the range the API accepts, levels as a list,
"not measured" always allowed), scored by the same Predictor the API uses, and answered
with the risk, the band, the threshold and a waterfall of the explanation. The page's
script sends the form again as a value changes and swaps in the answer; without the
script the form's button does the same. For the predictor role (and admin)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from medserve.data.disclosure import shown_levels, withheld_columns
from medserve.data.schema import ColumnSpec, Schema
from medserve.errors import ExplanationUnavailable, MedserveError
from medserve.http.deps import AuditSubject, CsrfChecked, ScoringDep, UiUser, require_role
from medserve.http.problems import http_status
from medserve.http.routes.models import ModelName
from medserve.http.routes.ui.pages import PRIVATE_HEADERS, page, router
from medserve.reporting.dashboard import render_page
from medserve.scoring.predictor import InvalidRecords, Prediction
from medserve.scoring.validation import plausible_range
from medserve.security.api_keys import ApiKey

PredictorOnly = Annotated[ApiKey, Depends(require_role("predictor"))]
# Form fields are named "f:" + the feature, so no feature name can collide with "csrf".
FIELD_PREFIX = "f:"
# The waterfall shows the inputs that moved the risk most, at most this many.
WATERFALL_ROWS = 12
PARTIAL_HEADER = "x-partial"


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    unit: str | None
    kind: str  # number | levels | text
    levels: list[str] | None
    low: float | None
    high: float | None
    value: str


def _fields(schema: Schema, values: dict[str, str]) -> list[Field]:
    withheld = withheld_columns(schema)
    fields = []
    for spec in schema.features:
        levels = shown_levels(spec, withheld)
        bounds = plausible_range(spec)
        kind = "number" if spec.numeric_encoded else ("levels" if levels else "text")
        fields.append(
            Field(
                name=spec.name,
                label=spec.shown_name,
                unit=spec.unit,
                kind=kind,
                levels=levels,
                low=bounds[0] if bounds else None,
                high=bounds[1] if bounds else None,
                value=values.get(spec.name, ""),
            )
        )
    return fields


def _record(schema: Schema, values: dict[str, str]) -> dict[str, Any]:
    """The form's values as a REST client sends them: numbers as numbers, blank as null."""
    record: dict[str, Any] = {}
    for spec in schema.features:
        text = values.get(spec.name, "").strip()
        record[spec.name] = None if not text else _typed(spec, text)
    return record


def _typed(spec: ColumnSpec, text: str) -> Any:
    if spec.numeric_encoded:
        try:
            return float(text)
        except ValueError:
            return text  # refused by the schema's rules, with their message
    return text


def _waterfall(schema: Schema, prediction: Prediction) -> dict[str, Any] | None:
    """Bars from the base value to the record's log-odds: the inputs that moved it most."""
    explanation = prediction.explanation
    if explanation is None:
        return None
    labels = {spec.name: spec.shown_name for spec in schema.columns}
    ranked = sorted(explanation.contributions.items(), key=lambda item: -abs(item[1]))
    shown, rest = ranked[:WATERFALL_ROWS], ranked[WATERFALL_ROWS:]
    rows, level = [], explanation.base_value
    for name, value in shown + ([("(the other inputs)", sum(v for _, v in rest))] if rest else []):
        rows.append({"label": labels.get(name, name), "start": level, "value": value})
        level += value
    points = [explanation.base_value, level, *(r["start"] for r in rows)]
    low, high = min(points), max(points)
    span = (high - low) or 1.0
    for row in rows:
        left = min(row["start"], row["start"] + row["value"])
        row["x"] = round(100 * (left - low) / span, 2)
        row["width"] = max(round(100 * abs(row["value"]) / span, 2), 0.3)
    return {
        "space": explanation.space,
        "base": explanation.base_value,
        "final": level,
        "rows": rows,
        "summary": explanation.summary,
        "zero_x": round(100 * (0 - low) / span, 2) if low <= 0 <= high else None,
    }


def _answer(request: Request, scoring: Any, name: str, values: dict[str, str] | None):
    """The served model, its fields, and (when ``values`` came) the scored answer."""
    served = scoring.catalog.get(name)
    schema = served.schema
    context: dict[str, Any] = {
        "name": name,
        "version": served.version.version,
        "threshold": served.version.threshold,
        "fields": _fields(schema, values or {}),
        "field_prefix": FIELD_PREFIX,
        "result": None,
        "problems": [],
    }
    if values is None:
        return served, context
    record = _record(schema, values)
    try:
        try:
            (prediction,) = scoring.predictor.predict(served, [record], explain=True)
        except ExplanationUnavailable:
            (prediction,) = scoring.predictor.predict(served, [record])
    except InvalidRecords as error:
        labels = {spec.name: spec.shown_name for spec in schema.columns}
        context["problems"] = [
            f"{labels.get(p.field, p.field)}: {p.message.split(': ', 1)[-1]}"
            for p in error.problems
        ]
        return served, context
    # Not logged for monitoring: a what-if record is a question, not a patient.
    context["result"] = {
        "risk": prediction.risk,
        "percent": _percent(prediction.risk),
        "band": prediction.band,
        "label": prediction.label,
        "waterfall": _waterfall(schema, prediction),
    }
    return served, context


def _percent(risk: float) -> str:
    if risk < 0.001:
        return "<0.1%"
    if risk > 0.999:
        return ">99.9%"
    return f"{100 * risk:.1f}%"


@router.get("/models/{name}/whatif")
async def whatif_page(
    request: Request,
    session: UiUser,
    key: PredictorOnly,
    subject: AuditSubject,
    scoring: ScoringDep,
    name: str = ModelName,
) -> HTMLResponse:
    subject.model = name
    try:
        served, context = await run_in_threadpool(_answer, request, scoring, name, None)
    except MedserveError as error:
        return page("error.html.j2", session, status_code=http_status(error),
                    title="No what-if", message=error.message)  # fmt: skip
    subject.model_version = served.version.version
    return page("whatif.html.j2", session, **context)


@router.post("/models/{name}/whatif")
async def whatif_answer(
    request: Request,
    session: CsrfChecked,
    key: PredictorOnly,
    subject: AuditSubject,
    scoring: ScoringDep,
    name: str = ModelName,
) -> HTMLResponse:
    subject.model, subject.n_records = name, 1
    form = await request.form()
    values = {
        field[len(FIELD_PREFIX) :]: str(value)[:1000]
        for field, value in form.multi_items()
        if field.startswith(FIELD_PREFIX) and isinstance(value, str)
    }
    try:
        served, context = await run_in_threadpool(_answer, request, scoring, name, values)
    except MedserveError as error:
        return page("error.html.j2", session, status_code=http_status(error),
                    title="No what-if", message=error.message)  # fmt: skip
    subject.model_version = served.version.version
    status = 422 if context["problems"] else 200
    if request.headers.get(PARTIAL_HEADER) == "1":  # the page's script: the answer alone
        html = render_page("whatif_result.html.j2", **context)
        return HTMLResponse(html, status_code=status, headers=PRIVATE_HEADERS)
    return page("whatif.html.j2", session, status_code=status, **context)

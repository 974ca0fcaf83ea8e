"""Refitting a stored model on a local site's data, when asked for (`medserve recalibrate
… --refit`): the same family, features, outcome definition, seed and validation as the
parent, trained anew on the local rows and registered as the next version of the name
(a candidate), its parent in the lineage, with its own training report. The parent's
threshold rule, folds and missing tokens carry over; the columns' types are inferred
again from the local data (a column may read differently there). Audited first.

Recalibration is the default local update because it keeps what the development data
taught the model and only corrects its calibration; refitting replaces that with what a
(usually smaller) local sample says, so it is never done unless asked."""

from __future__ import annotations

from collections.abc import Callable

from medserve.config import Settings
from medserve.data import ReadOptions
from medserve.errors import ConfigError, DataError, option
from medserve.flows.common import load_model
from medserve.flows.prepare import TrainRequest
from medserve.flows.tables import Table, read_source
from medserve.flows.train import TrainOutcome, train_and_register
from medserve.modeling.families.imported import is_imported
from medserve.modeling.threshold import ThresholdRule
from medserve.security.local_audit import record_local_action
from medserve.storage import Registry


def refit_stored(
    settings: Settings,
    ref: str,
    data: Table,
    *,
    target: str | None = None,
    positive: str | None = None,
    positive_if: str | None = None,
    read: ReadOptions | None = None,
    source_name: str | None = None,
    seed: int | None = None,
    progress: Callable[..., None] | None = None,
) -> TrainOutcome:
    """Train ``ref``'s family again on ``data`` (its features only) and register it as the
    next version of the name, with ``parent`` in its lineage."""
    with Registry(settings) as registry:
        parent, model = load_model(registry, ref)
    if is_imported(model.pipeline):
        raise ConfigError(
            f"{parent.ref} is an imported {parent.family} model: medserve does not train it; "
            "recalibrate it instead of refitting, or import a model refitted elsewhere"
        )
    source = read_source(data, source_name, read=read)
    frame = source.frame
    outcome = model.schema.outcome
    column = target or (outcome.column if outcome is not None else None)
    if column is None or column not in frame.columns:
        raise DataError(
            f"{source.name} has no outcome column {column!r}: name it with {option('target')}"
        )
    features = model.schema.feature_names
    absent = [name for name in features if name not in frame.columns]
    if absent:
        raise DataError(
            f"{source.name} lacks the model's feature(s) {', '.join(map(repr, absent))}: "
            "refitting trains on the same features"
        )
    if positive is None and positive_if is None and outcome is not None:
        positive, positive_if = outcome.positive, outcome.positive_if
    text = [spec.name for spec in model.schema.features if spec.type == "text"]
    rule = ThresholdRule.described(model.threshold_rule)
    missing = {
        spec.name: spec.missing_tokens for spec in model.schema.features if spec.missing_tokens
    }
    request = TrainRequest(
        data=frame,
        name=parent.name,
        target=column,
        positive=positive,
        positive_if=positive_if,
        family=parent.family,
        seed=int(parent.params.get("seed", 0)) if seed is None else seed,
        validation=str(parent.params.get("validation") or "cv"),
        cv=int(model.info.get("cv_folds") or 5),
        # The same definition of "flagged" as the parent's, and the same missing tokens.
        threshold_for=rule.spelled(),
        missing=missing or None,
        ignore=[name for name in frame.columns if name not in features and name != column],
        text=text or None,
        source_name=source.name,
        parent=parent.ref,
    )
    with Registry(settings) as registry:
        # The local rows are read to train on: the trail says who, which model, how many,
        # before anything is trained or registered (no record, no refit: fail closed).
        record_local_action(settings, registry.engine, "refit", parent, n_records=len(frame))
    return train_and_register(settings, request, progress)

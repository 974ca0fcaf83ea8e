"""`medserve recalibrate`: a stored model updated to a new site's outcomes by logistic
recalibration (TRIPOD+AI item 24), registered as a new version whose lineage names its
parent, with calibration before and after measured on the local data.

The model itself is not refitted: only the map from its risk to the local risk is learnt
(intercept only, or intercept and slope where the data's evidence asks for it). "After"
is measured honestly: each row's recalibrated risk comes from a recalibration fitted on
the other folds (cross-fitted), not from the one fitted on the row itself. The threshold
stays the parent's: it is a level of risk, and the risks are now the local ones. The
parent's FHIR bindings carry over: the child reads the same features."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from medserve.config import Settings
from medserve.core.user import login_name
from medserve.data import ReadOptions
from medserve.data.io import frame_sha256
from medserve.data.outcome import resolve_outcome
from medserve.errors import DataError, option
from medserve.evaluation import Metric, evaluate_predictions
from medserve.flows.common import library_versions, load_model
from medserve.flows.tables import Table, read_source
from medserve.modeling.recalibration import (
    LocalRecalibration,
    Method,
    composed_calibrator,
    fit_local_recalibration,
)
from medserve.modeling.train import labelled_rows
from medserve.monitoring.profile import ReferenceProfile
from medserve.security.local_audit import record_local_action
from medserve.storage import ModelVersion, Registry
from medserve.storage.bindings import BindingStore
from medserve.storage.profiles import ProfileStore

# Calibration is measured on at least this many events and non-events, as for evaluation.
MIN_CLASS_ROWS = 10
CROSS_FIT_FOLDS = 5
SHOWN = ("calibration_intercept", "calibration_slope", "brier")


@dataclass(frozen=True)
class RecalibrationOutcome:
    parent: ModelVersion
    version: ModelVersion
    update: LocalRecalibration
    n_rows: int
    n_events: int
    before: dict[str, Metric]
    after: dict[str, Metric]
    observed_expected: tuple[float, float]  # before, after

    def to_json(self) -> dict[str, Any]:
        return {
            "parent": self.parent.ref,
            "version": self.version.ref,
            "stage": self.version.stage,
            "method": self.update.method,
            "intercept": self.update.intercept,
            "slope": self.update.slope,
            "slope_p": self.update.slope_p,
            "n_rows": self.n_rows,
            "n_events": self.n_events,
            "before": _shown(self.before, self.observed_expected[0]),
            "after": _shown(self.after, self.observed_expected[1]),
        }


def _shown(metrics: dict[str, Metric], observed_expected: float) -> dict[str, Any]:
    found: dict[str, Any] = {name: metrics[name].to_dict() for name in SHOWN if name in metrics}
    found["observed_expected"] = observed_expected
    return found


def recalibrate_stored(
    settings: Settings,
    ref: str,
    data: Table,
    *,
    target: str | None = None,
    positive: str | None = None,
    positive_if: str | None = None,
    method: Method = "auto",
    read: ReadOptions | None = None,
    source_name: str | None = None,
    seed: int = 0,
    channel: str = "cli",
) -> RecalibrationOutcome:
    """Recalibrate ``ref`` to the labelled rows of ``data`` and register the result as the
    next version of its name (a candidate), its parent and the update in its lineage.
    Audited (``channel`` "cli" or "python") before anything is registered."""
    source = read_source(data, source_name, read=read)
    frame = source.frame.reset_index(drop=True)
    with Registry(settings) as registry:
        parent, model = load_model(registry, ref)
    outcome = model.schema.outcome
    column = target or (outcome.column if outcome is not None else None)
    if column is None or column not in frame.columns:
        raise DataError(
            f"{source.name} has no outcome column {column!r}: name it with {option('target')}"
        )
    if positive is not None or positive_if is not None or outcome is None:
        outcome = resolve_outcome(frame[column], column, positive, positive_if)
    elif column != outcome.column:
        outcome = outcome.model_copy(update={"column": column})
    schema = model.schema.model_copy(update={"outcome": outcome})
    rows, y, _ = labelled_rows(frame, schema)
    events = int(y.sum())
    if min(events, len(y) - events) < MIN_CLASS_ROWS:
        raise DataError(
            f"{source.name} has {events} events and {len(y) - events} non-events with an "
            f"outcome: recalibration needs at least {MIN_CLASS_ROWS} of each"
        )
    risk = model.predict_risk(rows)
    update = fit_local_recalibration(y, risk, method)
    after_risk = _cross_fitted(y, risk, update.method, seed)
    threshold = model.threshold
    before = evaluate_predictions(y, risk, threshold, seed=seed)
    after = evaluate_predictions(y, after_risk, threshold, seed=seed)
    oe = (float(y.mean() / risk.mean()), float(y.mean() / after_risk.mean()))
    updated = dataclasses.replace(model, calibrator=composed_calibrator(model.calibrator, update))
    lineage = {
        **parent.lineage,
        "parent": parent.ref,
        "recalibration": {
            "method": update.method,
            "intercept": update.intercept,
            "slope": update.slope,
            "slope_p": update.slope_p,
            "data_sha256": frame_sha256(frame),
            "source": source.name,
            "n_rows": len(y),
            "n_events": events,
            "observed_expected_before": oe[0],
            "observed_expected_after": oe[1],
            "by": login_name(),
            "at": datetime.now(UTC).isoformat(),
        },
        "libraries": library_versions(updated),
    }
    with Registry(settings) as registry:
        # The local outcomes were read: the trail says who, with which model, how many,
        # before anything is registered (no record, no new version: fail closed).
        record_local_action(
            settings, registry.engine, "recalibrate", parent, n_records=len(y), channel=channel
        )
        version = registry.register(
            parent.name,
            updated,
            family=parent.family,
            schema=parent.schema,
            metrics={name: metric.to_dict() for name, metric in after.items()},
            threshold=threshold,
            params={**parent.params, "recalibrated": update.method},
            lineage=lineage,
            data_sha256=parent.data_sha256,
        )
        _carry_bindings(BindingStore(registry.engine), parent, version)
        _carry_profile(ProfileStore(registry.engine), parent, version, update)
    return RecalibrationOutcome(parent, version, update, len(y), events, before, after, oe)


def _carry_bindings(store: BindingStore, parent: ModelVersion, child: ModelVersion) -> None:
    """The parent's FHIR bindings, for the child: the same features, read the same way."""
    for site in store.sites(parent.name, parent.version):
        document = store.get(parent.name, parent.version, site)
        if document is not None:
            store.put(child.name, child.version, site, document, login_name())


def _carry_profile(
    store: ProfileStore, parent: ModelVersion, child: ModelVersion, update: LocalRecalibration
) -> None:
    """The parent's reference profile, for the child: the same training data, and its
    risks as the child gives them. Recalibration is a monotone map of the risk (slope
    > 0), so the parent's risk bins, their edges mapped, hold the same shares."""
    document = store.get(parent.name, parent.version)
    if document is None:
        return
    profile = ReferenceProfile.from_dict(document)
    if update.slope > 0:
        edges = update.apply(np.asarray(profile.risk_edges, dtype=float)).tolist()
        profile = dataclasses.replace(profile, risk_edges=edges, risk_mean=None)
    else:  # a reversed ranking: the parent's risk bins say nothing of the child's
        profile = dataclasses.replace(profile, risk_edges=[], risk_fractions=[1.0], risk_mean=None)
    store.put(child.name, child.version, profile.to_dict())


def _cross_fitted(y: np.ndarray, risk: np.ndarray, method: str, seed: int) -> np.ndarray:
    """Each row's recalibrated risk from the same kind of update fitted on the other folds."""
    kind: Method = "slope" if method == "intercept+slope" else "intercept"
    folds = min(CROSS_FIT_FOLDS, int(min(y.sum(), len(y) - y.sum())))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = np.empty_like(risk, dtype=float)
    for fit_rows, held_out in splitter.split(risk.reshape(-1, 1), y):
        fold_update = fit_local_recalibration(y[fit_rows], risk[fit_rows], kind)
        out[held_out] = fold_update.apply(risk[held_out])
    return out

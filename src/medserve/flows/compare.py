"""`medserve models compare A B [DATA]`: two versions side by side (their training metrics
with intervals, data fingerprints, outcome definitions and options), and, given labelled
data, both scored on the same rows with the difference in AUROC and its paired interval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sklearn.metrics import roc_auc_score

from medserve.config import Settings
from medserve.errors import ConfigError
from medserve.evaluation import Metric
from medserve.evaluation.comparison import paired_auroc_difference
from medserve.flows.common import load_model, version_json
from medserve.flows.tables import Table, read_source
from medserve.modeling.train import labelled_rows
from medserve.storage import ModelVersion, Registry


@dataclass(frozen=True)
class OnData:
    """Both versions on the same labelled rows."""

    source: str
    n_rows: int
    n_events: int
    auroc_a: float
    auroc_b: float
    difference: Metric  # AUROC of A minus AUROC of B, paired bootstrap interval

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n_rows": self.n_rows,
            "n_events": self.n_events,
            "auroc": [self.auroc_a, self.auroc_b],
            "auroc_difference": self.difference.to_dict(),
        }


@dataclass(frozen=True)
class Comparison:
    a: ModelVersion
    b: ModelVersion
    on_data: OnData | None

    @property
    def same_data(self) -> bool:
        return self.a.data_sha256 == self.b.data_sha256

    def differing_options(self) -> list[str]:
        """The stored options (params, one level down) whose values differ."""
        keys = sorted(set(_flat(self.a.params)) | set(_flat(self.b.params)))
        a, b = _flat(self.a.params), _flat(self.b.params)
        return [key for key in keys if a.get(key) != b.get(key)]

    def to_json(self) -> dict[str, Any]:
        return {
            "versions": [
                {**version_json(v), "data_sha256": v.data_sha256, "metrics": v.metrics}
                for v in (self.a, self.b)
            ],
            "same_data": self.same_data,
            "differing_options": self.differing_options(),
            "on_data": self.on_data.to_json() if self.on_data else None,
        }


def compare_versions(
    settings: Settings,
    ref_a: str,
    ref_b: str,
    data: Table | None = None,
    *,
    seed: int = 0,
    source_name: str | None = None,
) -> Comparison:
    """Compare two stored versions; with ``data``, score both on its labelled rows."""
    with Registry(settings) as registry:
        a, model_a = load_model(registry, ref_a)
        b, model_b = load_model(registry, ref_b)
    if a.ref == b.ref:
        raise ConfigError(f"{a.ref} is compared with itself: name two different versions")
    if data is None:
        return Comparison(a, b, None)
    outcome_a, outcome_b = model_a.schema.outcome, model_b.schema.outcome
    if outcome_a is None or outcome_a != outcome_b:
        said = [o.describe() if o else "none" for o in (outcome_a, outcome_b)]
        raise ConfigError(
            f"{a.ref} predicts '{said[0]}' and {b.ref} '{said[1]}': their AUROCs on the same "
            "rows answer different questions; compare versions of one outcome"
        )
    source = read_source(data, source_name)
    rows, labels, _ = labelled_rows(source.frame, model_a.schema)
    risk_a, risk_b = model_a.predict_risk(rows), model_b.predict_risk(rows)
    difference = paired_auroc_difference(labels, risk_a, risk_b, seed=seed)
    on_data = OnData(
        source.name,
        len(labels),
        int(labels.sum()),
        float(roc_auc_score(labels, risk_a)),
        float(roc_auc_score(labels, risk_b)),
        difference,
    )
    return Comparison(a, b, on_data)


def _flat(params: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": item for inner, item in value.items()})
        else:
            flat[key] = value
    return flat

"""The Python API, for notebooks and scripts: train, load, score, explain and evaluate with
DataFrames. A sibling of the CLI over the same flows, so a model trained here is the model
`medserve predict` scores, and the same errors (``medserve.errors``) come back::

    import medserve

    model = medserve.train(df, target="num", positive_if=">0", name="heart")
    model = medserve.load("heart")          # the production version, or "heart:2"
    model.predict(df)                        # risk, label, risk_band; df's index kept
    model.explain(df).contributions          # log-odds per input column
    model.evaluate(other_site, target="num").metrics["auroc"]
    local = model.recalibrate(other_site)    # a new candidate, this version its parent

Where models are kept comes from the environment (``MEDSERVE_HOME``, …) as for the CLI,
unless ``home=`` (or a whole ``settings=``) says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medserve.config import Settings
from medserve.core.risk import RiskBands
from medserve.data import Schema
from medserve.errors import (
    ConfigError,
    DataError,
    ExplanationUnavailable,
    IntegrityError,
    MedserveError,
    ModelNotFound,
    RegistryError,
    SchemaError,
)
from medserve.evaluation import Metric
from medserve.explain import Explainer, explained
from medserve.flows.common import load_model
from medserve.flows.evaluate import EvaluationOutcome, evaluate_stored
from medserve.flows.predict import refuse_unseen_levels, risk_scores
from medserve.flows.recalibrate import recalibrate_stored
from medserve.flows.refit import refit_stored
from medserve.flows.tables import Table, read_source
from medserve.flows.train import TrainOutcome, TrainRequest, train_and_register
from medserve.modeling import TrainedModel
from medserve.security.local_audit import record_local_action
from medserve.storage import ModelVersion, Registry
from medserve.storage.artifacts import resolve_in_home

__all__ = [
    "ConfigError",
    "DataError",
    "EvaluationOutcome",
    "Explanation",
    "ExplanationUnavailable",
    "IntegrityError",
    "MedserveError",
    "Model",
    "ModelNotFound",
    "RegistryError",
    "SchemaError",
    "load",
    "train",
]


def train(
    data: Table,
    *,
    target: str | None = None,
    positive: str | None = None,
    positive_if: str | None = None,
    name: str | None = None,
    model: str = "auto",
    seed: int = 0,
    cv: int = 5,
    test_size: float = 0.2,
    threshold_for: str | None = None,
    metric: str = "auroc",
    validation: str = "cv",
    time_limit: float | None = 120.0,
    missing: dict[str, list[str]] | None = None,
    ignore: list[str] | None = None,
    groups: list[str] | None = None,
    intended_use: str | None = None,
    source_name: str | None = None,
    deid: bool = False,
    text: list[str] | None = None,
    text_not_deidentified: bool = False,
    engine: str = "local",
    home: str | Path | None = None,
    settings: Settings | None = None,
) -> Model:
    """Train on ``data`` (a DataFrame or a file), register the next version of ``name`` and
    return it loaded, as `medserve train` does with the same options.

    ``model`` is the family (``auto``, ``logistic``, ``lightgbm``, ``mlp``, ``ebm``, or
    several joined by commas for ``auto`` to choose from); ``metric`` how ``auto`` ranks
    them (``auroc``, ``brier``, ``logloss``); ``validation`` how performance is estimated
    (``cv``, ``bootstrap`` or ``holdout``) and ``time_limit`` the search's seconds;
    ``missing`` declares "not measured" tokens per column (``{"chol": ["0"]}``; an empty
    list keeps zeros); ``source_name`` is what reports and lineage call a DataFrame
    ("DataFrame" by default). A DataFrame needs ``name`` (or ``source_name``). ``deid``
    de-identifies the table first (HIPAA Safe Harbor, as `medserve train --deid`); ``text``
    names free-text columns (notes) the text family reads, which must have been
    de-identified unless ``text_not_deidentified`` (the report then says so). ``engine``
    is where the search fits: ``local`` (this process) or ``ray`` (Ray tasks, on the Ray
    this process has initialised, else ``settings.ray_address`` or a local Ray; the same
    model either way).

    Raises ``DataError``, ``SchemaError`` or ``ConfigError`` for data or options that do
    not fit, ``RegistryError`` when the registry cannot be written."""
    settings = _settings(home, settings)
    request = TrainRequest(
        data=data if isinstance(data, pd.DataFrame) else Path(data),
        target=target,
        positive=positive,
        positive_if=positive_if,
        family=model,
        name=name,
        seed=seed,
        test_size=test_size,
        cv=cv,
        threshold_for=threshold_for,
        metric=metric,
        validation=validation,
        time_limit=time_limit,
        missing=missing,
        ignore=ignore,
        groups=groups,
        intended_use=intended_use,
        source_name=source_name,
        deid=deid,
        text=text,
        text_not_deidentified=text_not_deidentified,
    )
    from medserve.scale.training import training_engine  # Ray only when asked for

    with training_engine(settings, engine) as parallel:
        outcome = train_and_register(settings, request, parallel=parallel)
    trained = load(outcome.version.ref, settings=settings)
    trained.training = outcome
    return trained


def load(ref: str, *, home: str | Path | None = None, settings: Settings | None = None) -> Model:
    """A registered model: ``"heart"`` (its production version, or its latest candidate) or
    ``"heart:2"``. Its artifact's integrity is checked before anything is unpickled.

    Raises ``ModelNotFound``, ``IntegrityError`` or ``RegistryError``."""
    settings = _settings(home, settings)
    with Registry(settings) as registry:
        version, model = load_model(registry, ref)
    return Model(version, model, settings)


@dataclass(frozen=True)
class Explanation:
    """Why each row got its risk, in log-odds (``space``): for every row,
    ``base_value + contributions.sum(axis=1)`` equals ``logit(risk)``. One contribution per
    raw input column (a level's one-hot parts and a number's missing indicator summed back);
    every series and frame is indexed as the rows explained."""

    space: str
    method: str
    base_value: pd.Series
    contributions: pd.DataFrame
    risk: pd.Series
    risk_band: pd.Series
    summary: pd.Series
    # A model that reads notes: per row, per note column, its sentences with the log-odds
    # each adds (leave-one-sentence-out), those that moved the risk most first.
    sentences: pd.Series | None = None

    @property
    def log_odds(self) -> pd.Series:
        return self.base_value + self.contributions.sum(axis=1)

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready object per row, as the HTTP API and `predict --explain` write it."""
        return [
            {
                "space": self.space,
                "method": self.method,
                "base_value": float(self.base_value.iloc[i]),
                "contributions": self.contributions.iloc[i].to_dict(),
                "summary": self.summary.iloc[i],
                **({} if self.sentences is None else {"sentences": self.sentences.iloc[i]}),
            }
            for i in range(len(self.base_value))
        ]

    def __len__(self) -> int:
        return len(self.base_value)


class Model:
    """One registered model version, loaded and checked, scoring DataFrames.

    Rows are read as on every channel (``medserve.data.values``); a level never seen in
    training is refused with ``SchemaError`` unless ``score_unseen_levels=True``, as
    `medserve predict` refuses it without ``--score-unseen-levels``."""

    def __init__(self, version: ModelVersion, model: TrainedModel, settings: Settings) -> None:
        self._version = version
        self._model = model
        self._settings = settings
        self._explainer: Explainer | None = None
        # What `train` reported (leaderboard, notices, report files); None after `load`.
        self.training: TrainOutcome | None = None

    def __repr__(self) -> str:
        return (
            f"<medserve.Model {self.ref} ({self.family}, {self.stage}): "
            f"risk of {self.outcome}, threshold {self.threshold:.3f}>"
        )

    @property
    def name(self) -> str:
        return self._version.name

    @property
    def version(self) -> int:
        return self._version.version

    @property
    def ref(self) -> str:
        """``name:version``, what `load` and the CLI take."""
        return self._version.ref

    @property
    def stage(self) -> str:
        return self._version.stage

    @property
    def family(self) -> str:
        return self._version.family

    @property
    def threshold(self) -> float:
        """A row is labelled 1 when its risk is at or above this."""
        return self._model.threshold

    @property
    def outcome(self) -> str:
        """The outcome definition, e.g. ``num > 0``."""
        assert self._model.schema.outcome is not None  # every trained model has one
        return self._model.schema.outcome.describe()

    @property
    def schema(self) -> Schema:
        return self._model.schema

    @property
    def features(self) -> list[str]:
        """The input columns the model reads."""
        return self._model.schema.feature_names

    @property
    def metrics(self) -> dict[str, Metric]:
        """Training's metrics as its internal validation measured them (out of fold by
        default; see the report's validation section), each with its 95% CI."""
        return {name: _metric(value) for name, value in self._version.metrics.items()}

    @property
    def lineage(self) -> dict[str, Any]:
        """Data file (or "DataFrame") and its sha256, library versions, who trained it."""
        return dict(self._version.lineage)

    @property
    def report_path(self) -> Path | None:
        """The training report (JSON; its HTML page lies beside it)."""
        if not self._version.report_path:
            return None
        return resolve_in_home(self._settings, self._version.report_path)

    def predict(self, data: Table, *, score_unseen_levels: bool = False) -> pd.DataFrame:
        """`risk` (probability of the event), `label` (1 at or above ``threshold``) and
        `risk_band` for each row, indexed as ``data``. Audited as `medserve predict` is."""
        scored = risk_scores(
            self._bands(), self._model, _frame(data), score_unseen_levels=score_unseen_levels
        )
        self._audited("predict", len(scored))
        return scored

    def _bands(self) -> RiskBands:
        return self._settings.bands_for(self._version.name, self._model.threshold)

    def _audited(self, action: str, n_records: int) -> None:
        """Patients' records were scored: the trail says who, with which model and how many
        before the answer is returned (if it cannot be written, no answer)."""
        with Registry(self._settings) as registry:
            record_local_action(
                self._settings,
                registry.engine,
                action,
                self._version,
                n_records=n_records,
                channel="python",
            )

    def predict_risk(self, data: Table, *, score_unseen_levels: bool = False) -> np.ndarray:
        """Each row's risk, as an array (the `risk` column of ``predict``)."""
        return self.predict(data, score_unseen_levels=score_unseen_levels)["risk"].to_numpy()

    def explain(self, data: Table, *, score_unseen_levels: bool = False) -> Explanation:
        """Each row's risk taken apart into per-column log-odds contributions, with the
        sentence `predict --explain` writes. Raises ``ExplanationUnavailable`` for a model
        stored before explanations existed."""
        frame = _frame(data)
        refuse_unseen_levels(self._model, frame, score_unseen_levels)
        if self._explainer is None:
            self._explainer = Explainer(self._model)
        explanations = self._explainer.explain_frame(frame)
        risk = self._model.predict_risk(frame)
        bands = self._bands().of(risk.tolist())
        records = explained(
            explanations, risk.tolist(), bands, frame.to_dict("records"), self._model.schema
        )
        index = frame.index
        self._audited("explain", len(frame))
        return Explanation(
            space=explanations.space,
            method=explanations.method,
            base_value=pd.Series(explanations.base_value, index=index, name="base_value"),
            contributions=pd.DataFrame(
                explanations.contributions, index=index, columns=list(explanations.columns)
            ),
            risk=pd.Series(risk, index=index, name="risk"),
            risk_band=pd.Series(bands, index=index, name="risk_band"),
            summary=pd.Series([r["summary"] for r in records], index=index, name="summary"),
            sentences=None
            if explanations.sentences is None
            else pd.Series([r["sentences"] for r in records], index=index, name="sentences"),
        )

    def evaluate(
        self,
        data: Table,
        target: str | None = None,
        *,
        seed: int = 0,
        groups: list[str] | None = None,
        intended_use: str | None = None,
        source_name: str | None = None,
    ) -> EvaluationOutcome:
        """External validation on labelled rows (another site, a later period), as
        `medserve evaluate`: metrics with 95% bootstrap CIs and a report stored beside the
        training report (``report_path``, ``report_html``). ``target`` names the outcome
        column when it is not called as in training; the definition stays the model's.
        Audited as `medserve evaluate` is, before the report is written."""
        return evaluate_stored(
            self._settings,
            self.ref,
            data if isinstance(data, pd.DataFrame) else Path(data),
            target,
            seed,
            groups=groups,
            intended_use=intended_use,
            source_name=source_name,
            channel="python",
        )

    def recalibrate(
        self,
        data: Table,
        target: str | None = None,
        *,
        method: str = "auto",
        seed: int = 0,
        source_name: str | None = None,
        refit: bool = False,
    ) -> Model:
        """Local updating, as `medserve recalibrate`: this model's risk recalibrated to the
        labelled rows of ``data`` (``method`` "auto", "intercept" or "slope"), registered as
        a new candidate version with this one as its parent; returns it. Audited first.
        With ``refit``, the model is trained anew on ``data`` instead (`--refit`)."""
        source = data if isinstance(data, pd.DataFrame) else Path(data)
        if refit:
            refitted = refit_stored(
                self._settings, self.ref, source, target=target, source_name=source_name
            )
            return load(refitted.version.ref, settings=self._settings)
        outcome = recalibrate_stored(
            self._settings,
            self.ref,
            source,
            target=target,
            method=method,  # type: ignore[arg-type]
            seed=seed,
            source_name=source_name,
            channel="python",
        )
        return load(outcome.version.ref, settings=self._settings)


def _settings(home: str | Path | None, settings: Settings | None) -> Settings:
    """The caller's settings, else the environment's (as the CLI reads them), ``home`` first."""
    if settings is not None and home is not None:
        raise ConfigError("give either home or settings, not both")
    if settings is not None:
        return settings
    return Settings(home=Path(home)) if home is not None else Settings()


def _frame(data: Table) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame | str | Path):
        raise DataError(f"expected a pandas DataFrame or a file path, got {type(data).__name__}")
    return read_source(data if isinstance(data, pd.DataFrame) else Path(data)).frame


def _metric(value: dict[str, Any]) -> Metric:
    """A stored metric (JSON: None for undefined) as a ``Metric``."""

    def number(x: float | None) -> float:
        return math.nan if x is None else float(x)

    low, high = value["ci95"]
    return Metric(number(value["estimate"]), (number(low), number(high)))

"""What a model family is, and the registry of families.

A family is one object, defined in one module of this package, that knows everything the
rest of medserve needs about one kind of estimator: its name, whether ``auto`` tries it,
whether it takes missing values as they are, how to build its unfitted pipeline, how the
fast path scores it from the encoded matrix, how its log-odds are attributed to the
inputs for explanations, which fitted parameters the report shows, and the libraries it
needs. Code outside this package never asks which family a model is (by name or by
estimator class): it asks the model's family.

Families register by name, the built-in ones first (``medserve.modeling.families``);
``register_family`` adds another, ``registered_family`` does so for the length of a
``with`` block (tests, notebooks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from medserve.errors import ConfigError, ExplanationUnavailable
from medserve.modeling.preprocess import build_preprocessor, encoded_sources

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    from sklearn.pipeline import Pipeline

    from medserve.data.schema import Schema
    from medserve.modeling.families.imported import ImportedEstimator
    from medserve.modeling.model import TrainedModel

# The fitted estimator alone: encoded matrix → uncalibrated risk of the event, per row.
RawRisk = Callable[[np.ndarray], np.ndarray]
# Not a family: `--model auto` cross-validates the families that are ``in_auto``.
AUTO = "auto"


class EncodedInput(Protocol):
    """What ``Family.compile`` is given about the fast path's encoding of records
    (``medserve.scoring.encoding.Encoding``): the width of the matrix it builds."""

    @property
    def width(self) -> int: ...


@dataclass(frozen=True)
class NativeMissing:
    """A family that takes missing values as they are (no imputation in its pipeline):
    who routes them, as the report names it, and whether missing levels stay missing
    too (otherwise a missing level is one-hot encoded as the level "(missing)")."""

    by: str
    levels: bool = False


@dataclass(frozen=True)
class Attribution:
    """Per row: where the log-odds start (``base``) and what each estimator input adds;
    ``base + contributions.sum(axis=1)`` is the estimator's uncalibrated log-odds."""

    base: np.ndarray  # (rows,)
    contributions: np.ndarray  # (rows, inputs)


@dataclass(frozen=True)
class Attributor:
    """A fitted model's exact attribution of its log-odds to the inputs its estimator reads.

    ``parts`` maps each estimator input to the raw columns it comes from, with shares that
    sum to 1 (a one-hot column or a missing indicator: its raw column, share 1; a pair
    term: each of its two columns, 1/2). explain/ sums contributions back to raw columns
    with it and carries them through recalibration."""

    attribute: Callable[[Any], Attribution]
    method: str
    parts: tuple[Mapping[str, float], ...]
    # True: ``attribute`` reads the preprocess step's encoded matrix (the fast path's);
    # False: the prepared frame (a family whose estimator reads typed columns itself).
    reads_matrix: bool = True


class Family(Protocol):
    """One kind of model. Implement these, ``register_family`` it, and train, the report,
    the registry, the fast path, explanations and the CLI all take it."""

    @property
    def name(self) -> str:
        """As users write it: ``medserve train --model NAME``; stored with every model."""
        ...

    @property
    def in_auto(self) -> bool:
        """Whether ``--model auto`` cross-validates this family."""
        ...

    @property
    def native_missing(self) -> NativeMissing | None:
        """None where the pipeline imputes missing numbers (median + missing indicator)."""
        ...

    @property
    def libraries(self) -> Mapping[str, str]:
        """Distributions it needs beyond numpy/pandas/scikit-learn (for lineage), each
        with the module it is imported as (the import contracts: only here, lazily)."""
        ...

    def build(self, schema: Schema, *, seed: int = 0) -> Pipeline:
        """The unfitted pipeline: a ``preprocess`` step (fitted on each training fold only)
        then a ``model`` step with ``predict_proba`` for classes 0 and 1."""
        ...

    def compile(self, pipeline: Pipeline, encoding: EncodedInput) -> RawRisk | None:
        """The fitted estimator as a function of the encoded matrix, giving exactly its
        ``predict_proba(matrix)[:, 1]`` (the fast path); None where it cannot (a family
        whose estimator reads the prepared frame, or an estimator it does not recognise):
        the service then scores through the reference pipeline."""
        ...

    def attribution(self, model: TrainedModel) -> Attributor | None:
        """The model's attribution for explanations; None where the family has none.
        Raises ExplanationUnavailable where this model cannot be explained (and why)."""
        ...

    def fitted_params(self, pipeline: Pipeline) -> dict[str, Any]:
        """What fitting chose (regularisation strength, tree count, epochs) as plain JSON
        values, shown beside the estimator's settings in the report and the registry."""
        ...


@runtime_checkable
class Tunable(Protocol):
    """A family with settings worth choosing on the data (tree capacity): training
    cross-validates each variant as its own candidate and builds the chosen one."""

    def variants(self, n_rows: int) -> Mapping[str, Mapping[str, Any]]:
        """Label (as the leaderboard shows it) → settings, for a table of ``n_rows`` rows."""
        ...

    def build(
        self, schema: Schema, *, seed: int = 0, settings: Mapping[str, Any] | None = None
    ) -> Pipeline: ...


@runtime_checkable
class Freezable(Protocol):
    """A family whose fit tunes itself on an internal split (early stopping, inner CV).
    A bootstrap resample repeats rows, so such a split would hold copies of the rows it is
    fitted on; refits on resamples use the settings the original fit chose instead."""

    def frozen(self, pipeline: Pipeline) -> Pipeline:
        """An unfitted twin of the fitted ``pipeline`` with its tuned settings fixed."""
        ...


def refit_twin(model: TrainedModel) -> Pipeline:
    """An unfitted copy of the model's pipeline to refit on other rows (a bootstrap
    resample): its tuned settings fixed where its family tunes itself, else a clone."""
    from sklearn.base import clone

    family = find_family(model.family)
    if isinstance(family, Freezable):
        return family.frozen(model.pipeline)
    return clone(model.pipeline)


@runtime_checkable
class Importable(Protocol):
    """A family whose models are trained elsewhere and imported (``medserve models import
    NAME --<family name> PATH --schema FILE``): the schema file's section named after the
    family says how the model reads the schema's columns."""

    @property
    def source_kind(self) -> str:
        """What is imported: "file" (one model file) or "folder" (a folder of files)."""
        ...

    @property
    def runtime_libraries(self) -> tuple[str, ...]:
        """The distributions that run the imported model (their versions go in lineage)."""
        ...

    def open_import(
        self,
        path: Path,
        schema: Schema,
        section: Mapping[str, Any],
        output: Mapping[str, Any],
        notices: list[str],
    ) -> tuple[list[Path], ImportedEstimator]:
        """The files to store and the loaded estimator (its ``files`` not yet set) of the
        model at ``path``, checked against ``schema`` and the schema file's sections (this
        family's and ``output``); ConfigError in one line naming what does not fit. What
        the user should know but is not wrong (files left out) is appended to ``notices``."""
        ...


@dataclass(frozen=True)
class Component:
    """One member of a composite model, as a model of its own family (no recalibration):
    the composite's log-odds add ``weight`` times this member's log-odds."""

    weight: float
    model: TrainedModel


@runtime_checkable
class Composite(Protocol):
    """A family whose models combine models of other families in log-odds
    (``intercept + Σ weight · logit(risk)``): the fast path scores each member its own way."""

    def components(self, model: TrainedModel) -> tuple[float, tuple[Component, ...]] | None:
        """The intercept and the members, or None where ``model`` is not one of its own."""
        ...


# --- the registry --------------------------------------------------------------------------

_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Make a family available under its name (after those already registered, which is
    the order ``auto`` tries them in). ConfigError if the name is taken or not allowed."""
    name = family.name
    if not name or name != name.strip().lower() or name == AUTO:
        raise ConfigError(f"a model family needs a lower-case name other than '{AUTO}'")
    if name in _FAMILIES:
        raise ConfigError(f"a model family named '{name}' is already registered")
    _FAMILIES[name] = family
    return family


def unregister_family(name: str) -> None:
    """Forget a registered family (models of it then score through the reference path)."""
    _FAMILIES.pop(name, None)


@contextmanager
def registered_family(family: Family) -> Iterator[Family]:
    """``with registered_family(MyFamily()):`` — the family is known inside the block only."""
    register_family(family)
    try:
        yield family
    finally:
        unregister_family(family.name)


def get_family(name: str) -> Family:
    """The family called ``name``; ConfigError naming the choices when there is none."""
    family = _FAMILIES.get(name)
    if family is None:
        raise ConfigError(
            f"unknown model family '{name}'; the families are {', '.join(family_names())}"
        )
    return family


def find_family(name: str | None) -> Family | None:
    """The family called ``name``, or None (a model stored by a family not installed here)."""
    return _FAMILIES.get(name) if name is not None else None


def family_names() -> tuple[str, ...]:
    return tuple(_FAMILIES)


def auto_candidates(schema: Schema | None = None) -> tuple[str, ...]:
    """The families ``--model auto`` cross-validates, in order: those that read notes
    only where ``schema`` has a text feature."""
    notes = schema is not None and any(spec.type == "text" for spec in schema.features)
    return tuple(
        name
        for name, family in _FAMILIES.items()
        if family.in_auto and (notes or not reads_text(name))
    )


def reads_text(family: str) -> bool:
    """Whether the named family reads text features (notes); the others leave them out."""
    return bool(getattr(find_family(family), "reads_text", False))


def make_pipeline(family: str, schema: Schema, *, seed: int = 0) -> Pipeline:
    """An unfitted pipeline of the named family (preprocessing first, fitted per fold)."""
    return get_family(family).build(schema, seed=seed)


# --- helpers the families share ------------------------------------------------------------


def preprocessed(schema: Schema, estimator: Any, *, impute: bool = True, scale: bool = True) -> Any:
    """The pipeline most families build: the schema's preprocessing, then ``estimator``."""
    from sklearn.pipeline import Pipeline

    preprocess = build_preprocessor(schema, impute=impute, scale=scale)
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


def estimator_of(pipeline: Pipeline) -> Any:
    """The pipeline's fitted ``model`` step."""
    return pipeline.named_steps.get("model")


def encoded_parts(pipeline: Pipeline) -> tuple[Mapping[str, float], ...]:
    """For an estimator reading the encoded matrix: each encoded column's raw column."""
    return tuple({source: 1.0} for source in encoded_sources(pipeline.named_steps["preprocess"]))


def matrix_attributor(
    pipeline: Pipeline, attribute: Callable[[np.ndarray], Attribution], method: str
) -> Attributor:
    """An attribution over the encoded matrix, its columns summed back per raw column."""
    return Attributor(attribute, method, encoded_parts(pipeline), reads_matrix=True)


def encoded_background(model: TrainedModel) -> np.ndarray:
    """The model's background sample (prepared training rows) as its estimator reads it:
    the population contributions are measured against."""
    if model.background is None:
        raise ExplanationUnavailable(
            f"this {model.family} model was stored without a background sample (trained "
            "before explanations existed); retrain it to explain its predictions"
        )
    prepared: pd.DataFrame = model.schema.prepare(model.background)
    return np.asarray(model.pipeline.named_steps["preprocess"].transform(prepared))


def first_value(value: object) -> Any:
    """A fitted attribute as one plain JSON value (``C_`` is a one-element array)."""
    return np.asarray(value).ravel().tolist()[0]

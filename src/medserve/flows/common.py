"""What the workflows share: versions of the libraries, loading a stored model, the JSON
fields common to `train` and `evaluate`, the explanations section of their reports."""

from __future__ import annotations

import json
import platform
from contextlib import AbstractContextManager
from importlib import metadata
from typing import Any

import pandas as pd
from pydantic import ValidationError

from medserve import __version__
from medserve.config import Settings
from medserve.data.outcome import Outcome
from medserve.errors import DataError
from medserve.evaluation import Metric
from medserve.evaluation.report_types import Explanations, TrainingReport, parse_report
from medserve.explain import report_section
from medserve.features.text import storing_embeddings
from medserve.modeling import TrainedModel
from medserve.modeling.families import Composite, get_family
from medserve.storage import ModelVersion, Registry
from medserve.storage.artifacts import resolve_in_home
from medserve.storage.embeddings import EmbeddingStore

# What every model's lineage records; each family adds the distributions it needs.
CORE_LIBRARIES = ("numpy", "pandas", "scikit-learn", "scipy", "statsmodels", "matplotlib")


def result_json(version: ModelVersion, metrics: dict[str, Metric]) -> dict[str, Any]:
    """The fields `train --json` and `evaluate --json` share."""
    return {
        **version_json(version),
        "metrics": {k: m.to_dict() for k, m in metrics.items()},
    }


def version_json(version: ModelVersion) -> dict[str, Any]:
    """What every command's JSON says of a version, in one vocabulary: ``model`` (its name),
    ``version``, ``ref``, ``stage``, ``family``, ``threshold`` and ``outcome`` (its
    definition, e.g. ``num > 0``: for a clinical model the most important line)."""
    return {
        "model": version.name,
        "version": version.version,
        "ref": version.ref,
        "stage": version.stage,
        "family": version.family,
        "threshold": version.threshold,
        "outcome": outcome_of(version),
    }


def outcome_of(version: ModelVersion) -> str | None:
    """The version's outcome definition ("num > 0", "readmitted = yes"), or None."""
    stored = (version.schema or {}).get("outcome")
    return Outcome.model_validate(stored).describe() if stored else None


# What a version's stored metrics were measured on, by its internal validation method
# (versions trained before --validation existed were all measured on a held-out split).
VALIDATED_ON = {"holdout": "held out", "cv": "out of fold", "bootstrap": "optimism-corrected"}


def validated_on(version: ModelVersion) -> str:
    """How the version's metrics were measured, in two words: "out of fold", "held out"."""
    return VALIDATED_ON.get((version.params or {}).get("validation", "holdout"), "held out")


def library_versions(model: TrainedModel) -> dict[str, str]:
    """Python, medserve and the installed versions of the libraries ``model`` is trained,
    scored and reported with (its lineage; a blend: its members' families' too)."""
    versions = {"python": platform.python_version(), "medserve": __version__}
    family = get_family(model.family)
    libraries = list(family.libraries)
    found = family.components(model) if isinstance(family, Composite) else None
    for component in found[1] if found else ():
        libraries.extend(get_family(component.model.family).libraries)
    for library in (*CORE_LIBRARIES, *dict.fromkeys(libraries)):
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            continue
    return versions


def load_model(registry: Registry, ref: str) -> tuple[ModelVersion, TrainedModel]:
    version = registry.get(ref)
    model = registry.load(version)
    if not isinstance(model, TrainedModel):
        raise DataError(f"{version.ref}: the stored artifact is not a medserve model")
    return version, model


def training_report_of(settings: Settings, version: ModelVersion) -> TrainingReport | None:
    """The version's training report, or None when it has none (or it cannot be read)."""
    if not version.report_path:
        return None
    try:
        path = resolve_in_home(settings, version.report_path)
        report = parse_report(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError):
        return None
    return report if isinstance(report, TrainingReport) else None


def explanations_of(model: TrainedModel, rows: pd.DataFrame) -> Explanations:
    """The report's explanations section: aggregates of the contributions over ``rows``."""
    return Explanations.model_validate(report_section(model, rows))


def notes_cached(settings: Settings) -> AbstractContextManager[None]:
    """Inside the block, notes encoded for a text model are remembered in the home's
    encrypted embedding cache (``storage.embeddings``), across runs."""
    return storing_embeddings(EmbeddingStore(settings))

"""Bring your own model: an ONNX file or a transformers folder, trained elsewhere, checked
against a schema file and registered as the next version of a name, encrypted, audited.

Nothing in the user's files is unpickled: onnxruntime reads the ONNX file, transformers
reads safetensors only (a folder of pickled weights is refused). Each imported file is
stored as its own encrypted artifact (streamed: bounded memory) and the model keeps
their references, never the weights (``core.stored_files``). All or nothing: a file that
is missing or does not load, or a schema that does not fit the model, registers nothing
and leaves no artifact behind.

The schema file (YAML or JSON)::

    columns:                       # the model's inputs, in order
      age: {type: numeric, min: 0, max: 120}
      bmi: {type: numeric}
    target: outcome                # the outcome column (for `medserve evaluate`)
    positive: "1"                  # or positive_if: ">0"
    onnx: {input: x, columns: [age, bmi]}       # default: its one input, all columns
    transformers: {text: note, positive_label: POSITIVE}
    output: {name: probabilities, class_index: 1, scale: probability}   # or logit
    threshold: 0.5                 # default 0.5; `medserve evaluate` measures others
    background: [{age: 50, bmi: 31}, ...]       # rows explanations are measured against
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from medserve.config import Settings
from medserve.core.stored_files import STORED_FILES, StoredFile
from medserve.core.user import login_name
from medserve.data.io import file_sha256
from medserve.data.outcome import Outcome
from medserve.data.schema import ColumnSpec, Schema
from medserve.errors import ConfigError, ExplanationUnavailable, MedserveError, RegistryError
from medserve.flows.common import library_versions
from medserve.modeling import TrainedModel
from medserve.modeling.families import Importable, family_names, get_family, imported_pipeline
from medserve.modeling.model import BACKGROUND_ROWS
from medserve.security.local_audit import record_local_action
from medserve.storage import ModelVersion, Registry
from medserve.storage.artifacts import delete_artifact, write_artifact_file
from medserve.storage.registry import check_name

# The schema file's keys besides each importable family's own section (named after it).
SCHEMA_KEYS = ("columns", "target", "positive", "positive_if", "output", "threshold", "background")
COLUMN_KEYS = ("type", "min", "max", "categories", "missing_tokens")
COLUMN_TYPES = ("numeric", "categorical", "binary", "text")
DEFAULT_THRESHOLD = 0.5


def importable_families() -> dict[str, Importable]:
    """The families whose models are imported, by name (``models import --NAME PATH``)."""
    families = {}
    for name in family_names():
        family = get_family(name)
        if isinstance(family, Importable):
            families[name] = family
    return families


@dataclass(frozen=True)
class ImportSpec:
    """What the schema file says: the inputs, how the model reads them, what it outputs."""

    schema: Schema
    threshold: float | None
    sections: dict[str, dict[str, Any]]  # each importable family's section, by its name
    output: dict[str, Any]
    background: pd.DataFrame | None
    sha256: str


@dataclass(frozen=True)
class ImportOutcome:
    """What `import_model` registered, the files it stored (name, sha256) and notices."""

    version: ModelVersion
    files: list[dict[str, Any]]
    notices: list[str] = field(default_factory=list)


def import_model(
    settings: Settings,
    name: str,
    *,
    schema_file: Path,
    channel: str = "cli",
    **model: Path | None,
) -> ImportOutcome:
    """Check the model against ``schema_file`` and register it as the next version of
    ``name`` (a candidate, unless the name is new), with the sha256 of every file imported
    and the runtime's version in its lineage; the import is audited (``channel`` "cli" or
    "python") before it counts: a version whose record cannot be written is removed.

    The model is given by its family's name: ``onnx=FILE`` or ``transformers=FOLDER``."""
    given = {kind: path for kind, path in model.items() if path is not None}
    if len(given) != 1:
        raise ConfigError(
            "import one model: give the path of one, by its family "
            f"({' or '.join(f'{kind}=PATH' for kind in importable_families())})"
        )
    ((kind, path),) = given.items()
    return import_from(settings, name, kind, Path(path), schema_file=schema_file, channel=channel)


def import_from(
    settings: Settings,
    name: str,
    kind: str,
    path: Path,
    *,
    schema_file: Path,
    channel: str = "cli",
) -> ImportOutcome:
    """``import_model`` of the model at ``path`` of the importable family called ``kind``."""
    families = importable_families()
    family = families.get(kind)
    if family is None:
        raise ConfigError(
            f"'{kind}' models are not imported; the importable families are {', '.join(families)}"
        )
    check_name(name)
    spec = read_import_spec(Path(schema_file))
    notices: list[str] = []
    sources, estimator = family.open_import(
        Path(path), spec.schema, spec.sections.get(family.name, {}), spec.output, notices
    )
    hashed = [StoredFile(p.name, file_sha256(p), p.stat().st_size) for p in sources]
    threshold = spec.threshold if spec.threshold is not None else DEFAULT_THRESHOLD
    if spec.threshold is None:
        notices.append(
            f"the threshold is {DEFAULT_THRESHOLD} (none in the schema file); `medserve "
            "evaluate` on labelled data shows how the model does at others"
        )
    model = TrainedModel(
        family=family.name,
        schema=spec.schema,
        pipeline=imported_pipeline(estimator),
        threshold=threshold,
        threshold_rule="set in the schema file" if spec.threshold is not None else "default 0.5",
        info={"imported": True},
        background=spec.background,
    )
    if spec.background is not None:
        _check_scores(model, spec.background)
    try:
        family.attribution(model)
    except ExplanationUnavailable as error:  # e.g. no background rows to measure against
        notices.append(f"explanations are unavailable: {error.message}")
    stored: list[StoredFile] = []
    try:
        for source, file in zip(sources, hashed, strict=True):
            artifact = write_artifact_file(settings, source)
            stored.append(
                StoredFile(file.name, file.sha256, file.size, artifact.path, artifact.sha256)
            )
        estimator.files = tuple(stored)
        version = _register(settings, name, model, family, spec, stored, channel)
    except BaseException:
        for file in stored:
            delete_artifact(settings, file.artifact_path)
        raise
    return ImportOutcome(
        version=version,
        files=[{"name": f.name, "sha256": f.sha256, "size": f.size} for f in stored],
        notices=notices,
    )


def _register(
    settings: Settings,
    name: str,
    model: TrainedModel,
    family: Importable,
    spec: ImportSpec,
    stored: list[StoredFile],
    channel: str,
) -> ModelVersion:
    user = login_name()
    files = [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in stored]
    # The import's fingerprint where a trained model has its data's: the files it is made of.
    fingerprint = _sha256_text(json.dumps([[f.name, f.sha256] for f in stored]))
    with Registry(settings) as registry:
        version = registry.register(
            name,
            model,
            family=model.family,
            schema=spec.schema.model_dump(mode="json"),
            metrics={},
            threshold=model.threshold,
            params={
                "imported": True,
                "files": files,
                "schema_file_sha256": spec.sha256,
                **get_family(model.family).fitted_params(model.pipeline),
            },
            lineage={
                "imported_files": files,
                "schema_file_sha256": spec.sha256,
                "libraries": library_versions(model),
                "runtime": _runtime_versions(family.runtime_libraries),
                "imported_by": user,
                "imported_at": datetime.now(UTC).isoformat(),
                STORED_FILES: [f.to_dict() for f in stored],
            },
            data_sha256=fingerprint,
            created_by=user,
        )
        try:
            record_local_action(
                settings, registry.engine, "models import", version, channel=channel
            )
        except BaseException as error:
            with contextlib.suppress(Exception):
                registry.delete(version.ref, force=True)  # its stored files go with it
            if isinstance(error, MedserveError | OSError):
                raise RegistryError(
                    f"the import of {version.ref} was undone: its audit record could not be "
                    f"written ({error}); fix the audit trail and import again"
                ) from error
            raise
    return version


def _runtime_versions(libraries: tuple[str, ...]) -> dict[str, str]:
    versions = {}
    for library in libraries:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[library] = metadata.version(library)
    return versions


def _sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def _check_scores(model: TrainedModel, rows: pd.DataFrame) -> None:
    """Score the background rows once: the model must give a risk between 0 and 1."""
    risk = model.predict_risk(rows)
    if len(risk) != len(rows) or not ((risk >= 0) & (risk <= 1)).all():
        raise ConfigError(
            "the imported model does not give one risk between 0 and 1 per background row; "
            "check the schema file's output section"
        )


# --- the schema file -------------------------------------------------------------------------


def read_import_spec(path: Path) -> ImportSpec:
    """The schema file of an import, checked; ConfigError in one line naming what is wrong."""
    if not path.is_file():
        raise ConfigError(f"schema file {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
        content = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as error:
        problem = str(error).strip().splitlines()[0]
        raise ConfigError(f"schema file {path}: does not parse ({problem})") from None
    if not isinstance(content, dict):
        raise ConfigError(f"schema file {path}: expected a mapping with a 'columns' section")
    families = tuple(importable_families())
    allowed = (*SCHEMA_KEYS, *families)
    unknown = sorted(set(map(str, content)) - set(allowed))
    if unknown:
        raise ConfigError(
            f"schema file {path}: unknown key(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(allowed)}"
        )
    columns = [_column(path, n, s) for n, s in _column_items(path, content.get("columns"))]
    names = [c.name for c in columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"schema file {path}: column '{repeated[0]}' is listed twice")
    target = content.get("target")
    if target is not None and str(target) in names:
        raise ConfigError(
            f"schema file {path}: the target '{target}' is also an input column; the outcome "
            "cannot be an input of the model"
        )
    outcome = None
    if target is not None:
        positive_if = content.get("positive_if")
        positive = None if positive_if else str(content.get("positive", "1"))
        outcome = Outcome(column=str(target), positive=positive, positive_if=positive_if)
        columns.append(ColumnSpec(name=str(target), type="binary", role="target"))
    schema = Schema(columns=columns, outcome=outcome)
    threshold = content.get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0 <= threshold <= 1
    ):
        raise ConfigError(f"schema file {path}: threshold {threshold!r} is not between 0 and 1")
    sections = {}
    for key in (*families, "output"):
        section = content.get(key) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"schema file {path}: '{key}' must be a mapping")
        sections[key] = section
    output = sections.pop("output")
    return ImportSpec(
        schema=schema,
        threshold=None if threshold is None else float(threshold),
        sections=sections,
        output=output,
        background=_background(path, content.get("background"), schema),
        sha256=file_sha256(path),
    )


def _column_items(path: Path, columns: Any) -> list[tuple[str, Any]]:
    if isinstance(columns, dict) and columns:
        return [(str(name), settings) for name, settings in columns.items()]
    if isinstance(columns, list) and columns and all(isinstance(c, dict) for c in columns):
        return [
            (str(c.get("name", "")), {k: v for k, v in c.items() if k != "name"}) for c in columns
        ]
    raise ConfigError(
        f"schema file {path}: 'columns' must map each input column to its settings, e.g. "
        "columns: {age: {type: numeric}}"
    )


def _column(path: Path, name: str, settings: Any) -> ColumnSpec:
    if isinstance(settings, str):
        settings = {"type": settings}
    if not name or not isinstance(settings, dict):
        raise ConfigError(f"schema file {path}: column {name!r} needs settings such as type")
    unknown = sorted(set(settings) - set(COLUMN_KEYS))
    if unknown:
        raise ConfigError(
            f"schema file {path}: column '{name}' has unknown setting(s) "
            f"{', '.join(map(str, unknown))}; allowed: {', '.join(COLUMN_KEYS)}"
        )
    kind = settings.get("type")
    if kind not in COLUMN_TYPES:
        raise ConfigError(
            f"schema file {path}: column '{name}' type {kind!r} is not one of "
            f"{', '.join(COLUMN_TYPES)}"
        )
    try:
        spec = ColumnSpec(
            name=name,
            type=kind,
            categories=[str(c) for c in settings["categories"]]
            if settings.get("categories")
            else None,
            minimum=settings.get("min"),
            maximum=settings.get("max"),
            missing_tokens=[str(t) for t in settings.get("missing_tokens") or []],
        )
    except (ValueError, TypeError) as error:
        # pydantic's first line names the model; the one after it says what is wrong.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        problem = "; ".join(lines[1:3]) if len(lines) > 1 else lines[0]
        raise ConfigError(f"schema file {path}: column '{name}': {problem}") from None
    if spec.minimum is not None and spec.maximum is not None and spec.minimum > spec.maximum:
        raise ConfigError(
            f"schema file {path}: column '{name}' has min {spec.minimum:g} above max "
            f"{spec.maximum:g}"
        )
    return spec


def _background(path: Path, rows: Any, schema: Schema) -> pd.DataFrame | None:
    if rows is None:
        return None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(f"schema file {path}: 'background' must be a list of rows (mappings)")
    frame = pd.DataFrame(rows[:BACKGROUND_ROWS])
    try:
        return schema.prepare(frame)
    except MedserveError as error:
        raise ConfigError(f"schema file {path}: background {error.message}") from None

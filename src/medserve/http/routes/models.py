"""Model metadata: what is served, its schema (what a request must look like), its metrics.
Registry queries block, so the routes are plain ``def`` (FastAPI's thread pool)."""

from __future__ import annotations

from fastapi import APIRouter, Path

from medserve.data.disclosure import (
    shown_bounds,
    shown_levels,
    shown_tokens,
    withheld_columns,
)
from medserve.data.schema import Schema
from medserve.http.deps import AnyKey, AuditSubject, RegistryDep
from medserve.http.schemas import (
    ERROR_RESPONSES,
    ColumnOut,
    ModelList,
    ModelOut,
    VersionDetail,
    VersionSummary,
)
from medserve.scoring.validation import plausible_range
from medserve.storage import ModelVersion

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES)
# Versions are 32-bit integers in the database (PostgreSQL INTEGER).
MAX_VERSION = 2**31 - 1
ModelName = Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="Registered model name.")


def summary(version: ModelVersion) -> VersionSummary:
    return VersionSummary(
        name=version.name,
        version=version.version,
        stage=version.stage,
        family=version.family,
        created_at=version.created_at.isoformat(),
        threshold=version.threshold,
        auroc=(version.metrics.get("auroc") or {}).get("estimate"),
    )


def detail(version: ModelVersion) -> VersionDetail:
    schema = Schema.model_validate(version.schema)
    withheld = withheld_columns(schema)  # what de-identification flagged: nothing shown
    columns = []
    for spec in schema.columns:
        if spec.role != "feature":
            continue
        bounds = shown_bounds(spec, withheld) if spec.numeric_encoded else None
        accepted = plausible_range(spec) if bounds else None
        columns.append(
            ColumnOut(
                name=spec.name,
                type=spec.type,
                role=spec.role,
                required=True,
                nullable=True,
                categories=shown_levels(spec, withheld) if not spec.numeric_encoded else None,
                training_range=list(bounds) if bounds else None,
                accepted_range=list(accepted) if accepted else None,
                missing_tokens=shown_tokens(spec, withheld),
            )
        )
    return VersionDetail(
        **summary(version).model_dump(),
        outcome=schema.outcome.describe() if schema.outcome else None,
        columns=columns,
        metrics=version.metrics,
        lineage=version.lineage,
        params=version.params,
    )


@router.get("", response_model=ModelList, summary="Every registered model and its versions")
def list_models(key: AnyKey, subject: AuditSubject, registry: RegistryDep) -> ModelList:
    by_name: dict[str, list[ModelVersion]] = {}
    for version in registry.list():
        by_name.setdefault(version.name, []).append(version)
    return ModelList(
        models=[
            ModelOut(
                name=name,
                production_version=next(
                    (v.version for v in versions if v.stage == "production"), None
                ),
                versions=[summary(v) for v in versions],
            )
            for name, versions in by_name.items()
        ]
    )


@router.get("/{name}", response_model=VersionDetail, summary="The version served by default")
def get_model(
    key: AnyKey, subject: AuditSubject, registry: RegistryDep, name: str = ModelName
) -> VersionDetail:
    subject.model = name
    version = registry.get(name)
    subject.model_version = version.version
    return detail(version)


@router.get(
    "/{name}/versions/{version}", response_model=VersionDetail, summary="One version in full"
)
def get_version(
    key: AnyKey,
    subject: AuditSubject,
    registry: RegistryDep,
    name: str = ModelName,
    version: int = Path(ge=1, le=MAX_VERSION),
) -> VersionDetail:
    subject.model, subject.model_version = name, version
    return detail(registry.get(f"{name}:{version}"))

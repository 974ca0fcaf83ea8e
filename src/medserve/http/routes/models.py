"""Model metadata: what is served, its schema (what a request must look like), its metrics."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request

from medserve.data.schema import Schema
from medserve.http.deps import AnyKey
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
    columns = []
    for spec in schema.columns:
        if spec.role != "feature":
            continue
        ranged = spec.numeric_encoded and spec.minimum is not None
        columns.append(
            ColumnOut(
                name=spec.name,
                type=spec.type,
                role=spec.role,
                required=True,
                nullable=True,
                categories=spec.categories if not spec.numeric_encoded else None,
                training_range=[spec.minimum, spec.maximum] if ranged else None,
                accepted_range=list(plausible_range(spec)) if ranged else None,
                missing_tokens=spec.missing_tokens,
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


def remember(request: Request, name: str, version: int | None = None) -> None:
    request.state.model_name = name
    request.state.model_version = version


@router.get("", response_model=ModelList, summary="Every registered model and its versions")
async def list_models(request: Request, key: AnyKey) -> ModelList:
    by_name: dict[str, list[ModelVersion]] = {}
    for version in request.app.state.registry.list():
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
async def get_model(request: Request, key: AnyKey, name: str = ModelName) -> VersionDetail:
    remember(request, name)
    version = request.app.state.registry.get(name)
    remember(request, name, version.version)
    return detail(version)


@router.get(
    "/{name}/versions/{version}", response_model=VersionDetail, summary="One version in full"
)
async def get_version(
    request: Request, key: AnyKey, name: str = ModelName, version: int = Path(ge=1)
) -> VersionDetail:
    remember(request, name, version)
    return detail(request.app.state.registry.get(f"{name}:{version}"))

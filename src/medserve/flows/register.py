"""The registry's part in training: a check before any work that it can be written, and at
the end the model, its report and its row stored together.

The report's page is rendered before registration, so a page that cannot be drawn registers
nothing, and the registry does not wait on it. The registry writes the encrypted artifact,
then, inside the row's transaction, the JSON report and its page, and removes them all when
the row cannot be committed: no reader sees a row without its report and page, nor a report
without its row. (Reports stored by older releases without a page get theirs rendered on
read, by ``flows.report``.)
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medserve.config import Settings
from medserve.core.user import login_name
from medserve.errors import ModelNotFound, RegistryError
from medserve.evaluation import Metric
from medserve.evaluation.report_types import TrainingReport
from medserve.flows.prepare import Prepared
from medserve.modeling import TrainedModel
from medserve.monitoring.profile import ReferenceProfile
from medserve.reporting.html import page_path, render_html
from medserve.storage import ModelVersion, Registry
from medserve.storage.artifacts import resolve_in_home
from medserve.storage.profiles import ProfileStore
from medserve.storage.registry import check_name, json_document

# The page's file name beside report.json.
PAGE_NAME = page_path(Path("report.json")).name


@dataclass(frozen=True)
class Registered:
    version: ModelVersion
    json_path: Path
    html_path: Path
    # Said to whoever trained it: e.g. that the same data and options made an earlier version.
    notices: list[str] = field(default_factory=list)


def check_registry(settings: Settings, name: str) -> None:
    """Open the registry, check that ``name`` is allowed and that reports can be written
    under the home, and close it again: an unusable registry fails before training."""
    check_name(name)
    with Registry(settings):
        try:
            with tempfile.TemporaryFile(dir=settings.reports_dir):
                pass
        except OSError as error:
            raise RegistryError(
                f"cannot write reports under {settings.reports_dir}: {error.strerror}"
            ) from error


def register(
    settings: Settings,
    prepared: Prepared,
    model: TrainedModel,
    *,
    metrics: dict[str, Metric],
    params: dict[str, Any],
    libraries: dict[str, str],
    report: TrainingReport,
    profile: ReferenceProfile | None = None,
) -> Registered:
    """Store the model as the next version of ``prepared.name`` with its report, and its
    reference profile for drift when given."""
    user = login_name()
    with Registry(settings) as registry:
        twins = _same_data_and_options(registry, prepared.name, prepared.data_sha256, params)
        expected_ref = f"{prepared.name}:{_next_version(registry, prepared.name)}"
        rendered = {expected_ref: render_html(report, expected_ref)}

        def page_for(ref: str) -> dict[str, bytes]:
            # Another registration of the name came first: the page names the version got.
            page = rendered.get(ref) or render_html(report, ref)
            return {PAGE_NAME: page.encode("utf-8")}

        version = registry.register(
            prepared.name,
            model,
            family=model.family,
            # The model's own: notes a tabular winner does not read are no feature of it.
            schema=model.schema.model_dump(mode="json"),
            metrics={k: m.to_dict() for k, m in metrics.items()},
            threshold=model.threshold,
            params=params,
            lineage={
                "data_file": prepared.source,
                "data_sha256": prepared.data_sha256,
                "libraries": libraries,
                "trained_by": user,
                **(
                    {"notes_encoder": model.info["notes_encoder"]}
                    if "notes_encoder" in model.info
                    else {}
                ),
                **(
                    {"parent": prepared.request.parent, "refit": True}
                    if prepared.request.parent
                    else {}
                ),
            },
            data_sha256=prepared.data_sha256,
            created_by=user,
            report=report.model_dump(mode="json"),
            report_files=page_for,
        )
        if profile is not None:
            ProfileStore(registry.engine).put(version.name, version.version, profile.to_dict())
    assert version.report_path is not None  # registered with a report
    json_path = resolve_in_home(settings, version.report_path)
    notices = (
        [
            f"{version.ref} was trained on the same data with the same options as "
            f"{', '.join(twins)}: it adds a version, not a different model"
        ]
        if twins
        else []
    )
    return Registered(version, json_path, page_path(json_path), notices)


def _same_data_and_options(
    registry: Registry, name: str, data_sha256: str, params: dict[str, Any]
) -> list[str]:
    """The versions of ``name`` trained on the same data (fingerprint) with the same
    options (the stored params, compared as JSON)."""
    try:
        versions = registry.versions(name)
    except ModelNotFound:
        return []
    same = json.dumps(json_document(params, "params"), sort_keys=True)  # as it is stored
    return [
        v.ref
        for v in versions
        if v.data_sha256 == data_sha256 and json.dumps(v.params, sort_keys=True) == same
    ]


def _next_version(registry: Registry, name: str) -> int:
    """The version the registry will give ``name`` next, unless another comes first."""
    try:
        return max(v.version for v in registry.versions(name)) + 1
    except ModelNotFound:
        return 1

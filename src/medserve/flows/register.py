"""The registry's part in training: a check before any work that it can be written, and at
the end the model, its report and its row stored together.

The report's page is rendered before registration, so a page that cannot be drawn registers
nothing. The registry writes the JSON report and the encrypted artifact before the row and
removes them when the row cannot be committed; the page, named after the version the
registry allocates, lands right after the commit. A reader that finds the row before its
page renders the page from the JSON (``flows.report``), so no reader sees a row without
its report, nor a report without its row.
"""

from __future__ import annotations

import getpass
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medserve.config import Settings
from medserve.errors import ModelNotFound, RegistryError
from medserve.evaluation import Metric
from medserve.evaluation.report_types import TrainingReport
from medserve.flows.prepare import Prepared
from medserve.flows.report import write_page
from medserve.modeling import TrainedModel
from medserve.reporting.html import render_html
from medserve.storage import ModelVersion, Registry
from medserve.storage.artifacts import resolve_in_home
from medserve.storage.registry import check_name


@dataclass(frozen=True)
class Registered:
    version: ModelVersion
    json_path: Path
    html_path: Path | None  # None when the page could not be written (see notices)
    notices: list[str]


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
) -> Registered:
    """Store the model as the next version of ``prepared.name`` with its report."""
    user = _user()
    with Registry(settings) as registry:
        expected_ref = f"{prepared.name}:{_next_version(registry, prepared.name)}"
        page = render_html(report, expected_ref)
        version = registry.register(
            prepared.name,
            model,
            family=model.family,
            schema=prepared.schema.model_dump(mode="json"),
            metrics={k: m.to_dict() for k, m in metrics.items()},
            threshold=model.threshold,
            params=params,
            lineage={
                "data_file": prepared.request.data.name,
                "data_sha256": prepared.data_sha256,
                "libraries": libraries,
                "trained_by": user,
            },
            data_sha256=prepared.data_sha256,
            created_by=user,
            report=report.model_dump(mode="json"),
        )
    if version.ref != expected_ref:  # another registration of the name came first
        page = render_html(report, version.ref)
    assert version.report_path is not None  # registered with a report
    json_path = resolve_in_home(settings, version.report_path)
    try:
        return Registered(version, json_path, write_page(json_path, page), [])
    except OSError as error:
        notice = (
            f"the report's page could not be written ({error.strerror}); "
            f"`medserve report {version.ref}` writes it from the JSON report"
        )
        return Registered(version, json_path, None, [notice])


def _next_version(registry: Registry, name: str) -> int:
    """The version the registry will give ``name`` next, unless another comes first."""
    try:
        return max(v.version for v in registry.versions(name)) + 1
    except ModelNotFound:
        return 1


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"

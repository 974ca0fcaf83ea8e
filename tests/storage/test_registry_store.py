"""Registry behaviour, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy import event

from medserve.config import Settings
from medserve.errors import ConfigError, IntegrityError, ModelNotFound
from medserve.storage import ModelVersion, Registry

RegisterModel = Callable[..., ModelVersion]  # the register_model fixture


class Tripwire:
    """Records every unpickling, so a test can prove one never happened."""

    unpickled = 0

    def __init__(self) -> None:
        self.armed = True

    def __setstate__(self, state: dict[str, Any]) -> None:
        Tripwire.unpickled += 1
        self.__dict__.update(state)


def stored_files(settings: Settings) -> list[Path]:
    """Every file under artifacts/ and reports/, temp files included."""
    return sorted(
        path
        for directory in (settings.artifacts_dir, settings.reports_dir)
        for path in directory.rglob("*")
        if path.is_file()
    )


def test_versions_increment_per_name(registry: Registry, register_model: RegisterModel) -> None:
    refs = [register_model(registry, name).ref for name in ("sepsis", "sepsis", "aki", "sepsis")]
    assert refs == ["sepsis:1", "sepsis:2", "aki:1", "sepsis:3"]
    assert [mv.version for mv in registry.versions("sepsis")] == [1, 2, 3]
    assert [mv.ref for mv in registry.list()] == ["aki:1", "sepsis:1", "sepsis:2", "sepsis:3"]


def test_first_version_is_production_and_later_ones_candidates(
    registry: Registry, register_model: RegisterModel
) -> None:
    stages = [register_model(registry, "sepsis").stage for _ in range(3)]
    assert stages == ["production", "candidate", "candidate"]


def test_get_by_name_returns_the_production_version(
    registry: Registry, register_model: RegisterModel
) -> None:
    register_model(registry, "sepsis")
    register_model(registry, "sepsis")
    assert registry.get("sepsis").ref == "sepsis:1"
    assert registry.get("sepsis:2").version == 2


def test_get_by_name_without_production_returns_the_latest(
    registry: Registry, register_model: RegisterModel
) -> None:
    register_model(registry, "sepsis")
    register_model(registry, "sepsis")
    registry.archive("sepsis:1", force=True)
    assert registry.get("sepsis").ref == "sepsis:2"


def test_get_by_name_never_falls_back_to_an_archived_version(
    registry: Registry, register_model: RegisterModel
) -> None:
    """Found in use: archiving the only version left `predict NAME` using it unannounced."""
    register_model(registry, "sepsis")
    registry.archive("sepsis:1", force=True)
    with pytest.raises(ModelNotFound, match=r"no production or candidate version.*'sepsis:1'"):
        registry.get("sepsis")
    assert registry.get("sepsis:1").stage == "archived"  # named exactly, still there


@pytest.mark.parametrize("action", ["promote", "archive", "delete"])
def test_a_stage_change_or_deletion_names_its_version(
    registry: Registry, register_model: RegisterModel, action: str
) -> None:
    register_model(registry, "sepsis")
    with pytest.raises(ConfigError, match=rf"name the version to {action}: 'sepsis:VERSION'"):
        getattr(registry, action)("sepsis")


@pytest.mark.parametrize("action", ["archive", "delete"])
def test_the_production_version_is_archived_or_deleted_only_with_force(
    registry: Registry, register_model: RegisterModel, action: str
) -> None:
    register_model(registry, "sepsis")
    with pytest.raises(ConfigError, match="sepsis:1 is in production: promote another"):
        getattr(registry, action)("sepsis:1")
    assert registry.get("sepsis:1").stage == "production"
    getattr(registry, action)("sepsis:1", force=True)


def test_delete_removes_the_row_the_artifact_and_the_reports(
    registry: Registry, register_model: RegisterModel, settings: Settings
) -> None:
    register_model(registry, "sepsis")
    kept = register_model(registry, "sepsis")
    gone = registry.get("sepsis:1")
    artifact = settings.home / gone.artifact_path
    assert artifact.is_file()
    registry.delete("sepsis:1", force=True)
    assert [v.ref for v in registry.list()] == [kept.ref]
    assert not artifact.exists()
    assert (settings.home / kept.artifact_path).is_file()


def test_get_unknown_name_says_where_to_look(registry: Registry) -> None:
    with pytest.raises(ModelNotFound, match=r"no model named 'nope'.*medserve models list"):
        registry.get("nope")
    with pytest.raises(ModelNotFound, match="no model named 'nope'"):
        registry.versions("nope")


def test_get_unknown_version_lists_the_versions_there_are(
    registry: Registry, register_model: RegisterModel
) -> None:
    register_model(registry, "sepsis")
    register_model(registry, "sepsis")
    with pytest.raises(ModelNotFound, match=r"'sepsis' has no version 7; its versions are 1, 2"):
        registry.get("sepsis:7")


@pytest.mark.parametrize("ref", ["sepsis:latest", "sepsis:1.5", "sepsis:0", "sepsis:-1", ":2"])
def test_get_with_malformed_version_is_a_config_error(registry: Registry, ref: str) -> None:
    with pytest.raises(ConfigError, match="NAME:VERSION"):
        registry.get(ref)


@pytest.mark.parametrize("name", ["", "Sepsis", "-sepsis", "sepsis risk", "a" * 64, "x:1", "é"])
def test_register_refuses_names_outside_the_rule(
    registry: Registry, register_model: RegisterModel, settings: Settings, name: str
) -> None:
    with pytest.raises(ConfigError, match="lowercase letters, digits"):
        register_model(registry, name)
    assert stored_files(settings) == []


def test_load_round_trips_an_equivalent_model(
    registry: Registry, register_model: RegisterModel, fitted_model: LogisticRegression
) -> None:
    mv = register_model(registry, "sepsis")
    features = np.random.default_rng(1).normal(size=(5, 3))

    loaded = registry.load(mv)

    assert isinstance(loaded, LogisticRegression)
    np.testing.assert_array_equal(
        loaded.predict_proba(features), fitted_model.predict_proba(features)
    )
    assert isinstance(registry.load("sepsis:1"), LogisticRegression)


def test_metadata_round_trips_as_plain_json(
    registry: Registry, register_model: RegisterModel, settings: Settings
) -> None:
    metrics = {"auroc": np.float64(0.8), "events": np.int64(12), "auprc": float("nan")}
    report = {"discrimination": {"auroc": 0.8}, "ci95": np.array([0.7, 0.9])}
    registered = register_model(registry, "sepsis", metrics=metrics, report=report)

    fetched = registry.get("sepsis:1")

    assert fetched == registered
    assert fetched.metrics == {"auroc": 0.8, "events": 12, "auprc": None}
    assert fetched.created_at.tzinfo is not None
    assert fetched.created_at.utcoffset() == UTC.utcoffset(None)
    assert fetched.created_by == "tester"
    assert fetched.report_path == "reports/sepsis/v1/report.json"
    stored_report = json.loads((settings.home / fetched.report_path).read_text())
    assert stored_report == {"discrimination": {"auroc": 0.8}, "ci95": [0.7, 0.9]}
    as_dict = json.loads(json.dumps(fetched.to_dict()))
    assert as_dict["ref"] == "sepsis:1"
    assert as_dict["created_at"] == fetched.created_at.isoformat()


def test_register_refuses_metadata_that_is_not_json(
    registry: Registry, register_model: RegisterModel, settings: Settings
) -> None:
    with pytest.raises(ConfigError, match="params holds a object"):
        register_model(registry, "sepsis", params={"estimator": object()})
    assert stored_files(settings) == []


def test_tampered_artifact_is_refused_before_unpickling(
    registry: Registry, register_model: RegisterModel, settings: Settings
) -> None:
    mv = register_model(registry, "tripwire", model=Tripwire())
    Tripwire.unpickled = 0
    assert registry.load(mv).armed  # untouched: unpickles
    assert Tripwire.unpickled == 1

    path = settings.home / mv.artifact_path
    tampered = bytearray(path.read_bytes())
    tampered[-5] ^= 0x01
    path.write_bytes(bytes(tampered))

    with pytest.raises(IntegrityError, match="failed its integrity check"):
        registry.load(mv)
    assert Tripwire.unpickled == 1


def test_unpicklable_model_leaves_the_registry_as_it_was(
    registry: Registry, register_model: RegisterModel, settings: Settings
) -> None:
    register_model(registry, "sepsis", report={"ok": True})
    before_files, before_rows = stored_files(settings), registry.list()

    with pytest.raises(Exception, match="pickle|lambda"):
        register_model(registry, "sepsis", model=lambda row: 0.5, report={"ok": True})

    assert registry.list() == before_rows
    assert stored_files(settings) == before_files


def test_failure_at_commit_leaves_no_row_and_no_files(
    registry: Registry, register_model: RegisterModel, settings: Settings
) -> None:
    register_model(registry, "sepsis", report={"version": 1})
    before_files, before_rows = stored_files(settings), registry.list()

    def power_cut(connection: object) -> None:
        raise OSError("simulated failure while committing")

    event.listen(registry.engine, "commit", power_cut)
    try:
        with pytest.raises(OSError, match="simulated failure"):
            register_model(registry, "sepsis", report={"version": 2})
    finally:
        event.remove(registry.engine, "commit", power_cut)

    assert registry.list() == before_rows
    assert stored_files(settings) == before_files
    assert not (settings.reports_dir / "sepsis" / "v2").exists()
    assert register_model(registry, "sepsis", report={"version": 2}).version == 2


def test_promote_archives_the_previous_production_version(
    registry: Registry, register_model: RegisterModel
) -> None:
    register_model(registry, "sepsis")
    register_model(registry, "sepsis")
    register_model(registry, "aki")

    promoted = registry.promote("sepsis:2")

    assert promoted.stage == "production"
    assert [mv.stage for mv in registry.versions("sepsis")] == ["archived", "production"]
    assert registry.get("sepsis").ref == "sepsis:2"
    assert registry.get("aki").stage == "production"  # other names untouched


def test_promote_can_roll_back_to_an_archived_version(
    registry: Registry, register_model: RegisterModel
) -> None:
    register_model(registry, "sepsis")
    register_model(registry, "sepsis")
    registry.promote("sepsis:2")
    registry.promote("sepsis:1")
    assert [mv.stage for mv in registry.versions("sepsis")] == ["production", "archived"]
    assert registry.promote("sepsis:1").stage == "production"  # already there: no change


def test_reopening_the_registry_keeps_its_data(
    settings: Settings, register_model: RegisterModel
) -> None:
    with Registry(settings) as first:
        registered = register_model(first, "sepsis")
    with Registry(settings) as second, Registry(settings) as third:
        assert second.get("sepsis") == registered
        assert third.list() == [registered]
        assert register_model(third, "sepsis").version == 2


def test_concurrent_registrations_get_distinct_consecutive_versions(
    settings: Settings, register_model: RegisterModel
) -> None:
    Registry(settings).close()  # migrate once; each worker then opens its own, like a replica
    workers, per_worker = 4, 3
    start = threading.Barrier(workers)
    registered: list[ModelVersion] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with Registry(settings) as replica:
                start.wait()
                for _ in range(per_worker):
                    registered.append(register_model(replica, "sepsis"))
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    expected = list(range(1, workers * per_worker + 1))
    assert sorted(mv.version for mv in registered) == expected
    with Registry(settings) as registry:
        versions = registry.versions("sepsis")
    assert [mv.version for mv in versions] == expected
    assert [mv.stage for mv in versions].count("production") == 1
    assert len({mv.artifact_id for mv in versions}) == len(expected)
    assert len(list(settings.artifacts_dir.iterdir())) == len(expected)

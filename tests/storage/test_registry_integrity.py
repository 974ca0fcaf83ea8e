"""Registry rows bound to their artifacts (an HMAC per row): a database writer who points a
model at another artifact, or changes its threshold, gets the version refused on load."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sklearn.linear_model import LogisticRegression
from sqlalchemy import text

from medserve.config import Settings
from medserve.errors import ConfigError, IntegrityError
from medserve.storage import ModelVersion, Registry, write_artifact
from medserve.storage.database import MIGRATIONS_DIR, open_engine
from medserve.storage.registry import serialise

RegisterModel = Callable[..., ModelVersion]  # the register_model fixture


class Tripwire:
    """Counts unpickling, so a test can prove a refused version was never unpickled."""

    unpickled = 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        Tripwire.unpickled += 1
        self.__dict__.update(state)


class ThresholdedModel:
    """A model that carries its own decision threshold, as ``TrainedModel`` does."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold


def update_row(registry: Registry, ref: str, **values: Any) -> None:
    """What an attacker with write access to the database does."""
    name, version = ref.split(":")
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    with registry.engine.begin() as connection:
        connection.execute(
            text(f"UPDATE model_versions SET {assignments} WHERE name = :n AND version = :v"),
            {**values, "n": name, "v": int(version)},
        )


def point_at_artifact_of(registry: Registry, ref: str, other: ModelVersion) -> None:
    update_row(
        registry,
        ref,
        artifact_id=other.artifact_id,
        artifact_path=other.artifact_path,
        artifact_sha256=other.artifact_sha256,
    )


def test_a_row_pointed_at_another_models_artifact_is_refused_before_unpickling(
    registry: Registry, register_model: RegisterModel
) -> None:
    register_model(registry, "heart")
    pima = register_model(registry, "pima", model=Tripwire())
    point_at_artifact_of(registry, "heart:1", pima)
    Tripwire.unpickled = 0

    with pytest.raises(IntegrityError, match=r"model heart:1 was refused: .*does not match"):
        registry.load("heart:1")
    assert Tripwire.unpickled == 0
    assert isinstance(registry.load("pima:1"), Tripwire)  # the other model is untouched


@pytest.mark.parametrize(
    "column, value",
    [
        ("threshold", 0.999),
        ("schema", '{"columns": {}}'),
        ("family", "lightgbm"),
        ("version", 7),
        ("name", "sepsis-copy"),
    ],
)
def test_a_changed_row_is_refused_naming_the_version(
    registry: Registry,
    register_model: RegisterModel,
    settings: Settings,
    column: str,
    value: Any,
) -> None:
    register_model(registry, "sepsis")
    update_row(registry, "sepsis:1", **{column: value})
    changed = registry.list()[0]

    with pytest.raises(IntegrityError, match=rf"model {changed.ref} was refused"):
        registry.load(changed)
    with Registry(settings) as fresh, pytest.raises(IntegrityError, match=changed.ref):
        fresh.load(changed.ref)  # a fresh process (no cached key) refuses it too


def test_a_stripped_mac_is_refused_not_taken_for_an_old_row(
    registry: Registry, register_model: RegisterModel
) -> None:
    register_model(registry, "sepsis")
    update_row(registry, "sepsis:1", mac=None, threshold=0.999)

    with pytest.raises(IntegrityError, match=r"model sepsis:1 was refused: .*no integrity MAC"):
        registry.load("sepsis:1")


def test_promoting_and_archiving_keep_versions_loadable(
    registry: Registry, register_model: RegisterModel
) -> None:
    register_model(registry, "sepsis")
    register_model(registry, "sepsis")
    registry.promote("sepsis:2")
    registry.archive("sepsis:1")
    assert all(isinstance(registry.load(mv), LogisticRegression) for mv in registry.list())


def test_registering_a_threshold_other_than_the_models_own_is_refused(
    registry: Registry, register_model: RegisterModel, settings: Settings
) -> None:
    with pytest.raises(ConfigError, match="differs from the model's own threshold 0.4"):
        register_model(registry, "sepsis", model=ThresholdedModel(0.4), threshold=0.3)
    assert list(settings.artifacts_dir.iterdir()) == []

    registered = register_model(registry, "sepsis", model=ThresholdedModel(0.3), threshold=0.3)
    assert registry.load(registered).threshold == registered.threshold == 0.3


def test_loading_without_the_master_key_creates_no_key(
    registry: Registry, register_model: RegisterModel, settings: Settings
) -> None:
    register_model(registry, "sepsis")
    key_file = settings.home / "master.key"
    key_file.unlink()

    with Registry(settings) as reopened, pytest.raises(IntegrityError, match="master key"):
        reopened.load("sepsis:1")
    assert not key_file.exists()


# Models stored by the previous release: no MAC column, rows written without one.


def previous_release_home(settings: Settings, models: dict[str, tuple[object, float]]) -> None:
    """A home as the previous release left it: schema 0002, rows without a MAC."""
    settings.home.mkdir(mode=0o700, parents=True)
    engine = open_engine(settings.resolved_database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0002")
            for name, (model, threshold) in models.items():
                artifact = write_artifact(settings, serialise(model))
                connection.execute(
                    text(
                        "INSERT INTO model_versions (name, version, stage, family, created_at, "
                        "created_by, artifact_id, artifact_path, artifact_sha256, data_sha256, "
                        "threshold, schema, metrics, params, lineage) VALUES (:name, 1, "
                        "'production', 'logistic', CURRENT_TIMESTAMP, 'tester', :id, :path, "
                        ":sha, :data, :threshold, '{}', '{}', '{}', '{}')"
                    ),
                    {
                        "name": name,
                        "id": artifact.artifact_id,
                        "path": artifact.path,
                        "sha": artifact.sha256,
                        "data": "ab" * 32,
                        "threshold": threshold,
                    },
                )
    finally:
        engine.dispose()


def test_models_stored_by_the_previous_release_keep_loading_then_are_bound(
    settings: Settings, fitted_model: LogisticRegression, caplog: pytest.LogCaptureFixture
) -> None:
    previous_release_home(settings, {"heart": (fitted_model, 0.3), "pima": (Tripwire(), 0.5)})

    with caplog.at_level(logging.WARNING, logger="medserve.storage"), Registry(settings) as first:
        assert isinstance(first.load("heart"), LogisticRegression)
        assert isinstance(first.load("pima"), Tripwire)
    assert "sealed 2 model versions stored without an integrity MAC" in caplog.text

    # Sealed on first use: from now on the same attacks are refused on these rows too.
    with Registry(settings) as registry:
        pima = registry.get("pima")
        point_at_artifact_of(registry, "heart:1", pima)
        with pytest.raises(IntegrityError, match="model heart:1 was refused"):
            registry.load("heart")
        update_row(registry, "pima:1", mac=None)
        with pytest.raises(IntegrityError, match="model pima:1 was refused: .*no integrity MAC"):
            registry.load("pima")


def test_a_previous_release_row_whose_threshold_differs_from_its_model_is_refused(
    settings: Settings,
) -> None:
    previous_release_home(settings, {"heart": (ThresholdedModel(0.3), 0.999)})

    with Registry(settings) as registry:
        with pytest.raises(
            IntegrityError, match=r"model heart:1 was refused: .*threshold 0.999 differs .* 0.3"
        ):
            registry.load("heart")


def test_previous_release_rows_are_sealed_once_only(
    settings: Settings, fitted_model: LogisticRegression
) -> None:
    previous_release_home(settings, {"heart": (fitted_model, 0.3)})
    with Registry(settings) as registry:
        registry.load("heart")  # seals
        update_row(registry, "heart:1", mac=None)
    with Registry(settings) as reopened:  # a new process does not seal again
        with pytest.raises(IntegrityError, match="no integrity MAC"):
            reopened.load("heart")

"""Models stored before the families package still load: their pickles name the
estimators by the modules they were defined in then (medserve.modeling.boosting and
medserve.modeling.mlp), which stay importable."""

from __future__ import annotations

import io
from collections.abc import Callable

import joblib
import numpy as np
import pytest

from medserve.config import Settings
from medserve.modeling import TrainedModel, TrainOptions, train_model
from medserve.modeling.families.lightgbm import EarlyStoppedLGBMClassifier
from medserve.modeling.families.mlp import TorchMLPClassifier
from medserve.scoring.compiled import FastScorer
from medserve.storage import Registry

OLD_PATHS = [
    ("lightgbm", EarlyStoppedLGBMClassifier, "medserve.modeling.boosting"),
    ("mlp", TorchMLPClassifier, "medserve.modeling.mlp"),
]


def pickled(model: object) -> bytes:
    """The pickle of ``model``, uncompressed: the module paths it names are in it verbatim."""
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def trained(heart, heart_schema) -> Callable[[str], TrainedModel]:
    models: dict[str, TrainedModel] = {}

    def model_for(family: str) -> TrainedModel:
        if family not in models:
            options = TrainOptions(family=family, cv=2)
            models[family] = train_model(heart, heart_schema, options).model
        return models[family]

    return model_for


@pytest.mark.parametrize(("family", "estimator", "old_module"), OLD_PATHS, ids=["lightgbm", "mlp"])
def test_a_model_pickled_under_the_old_module_path_loads_from_the_registry(
    family, estimator, old_module, trained, heart, tmp_path, monkeypatch
):
    model = trained(family)
    settings = Settings(home=tmp_path / "home")
    with monkeypatch.context() as old_release:
        # What the previous release wrote: the class defined in, so named by, the old module.
        old_release.setattr(estimator, "__module__", old_module)
        payload = pickled(model)
        assert old_module.encode() in payload
        assert b"medserve.modeling.families" not in payload
        with Registry(settings) as registry:
            version = registry.register(
                "old",
                model,
                family=family,
                schema=model.schema.model_dump(mode="json"),
                metrics={},
                threshold=model.threshold,
                params={},
                lineage={},
                data_sha256="ab" * 32,
            )
    assert estimator.__module__.startswith("medserve.modeling.families.")
    with Registry(settings) as registry:
        loaded = registry.load(version)
    assert type(loaded.pipeline.named_steps["model"]) is estimator
    np.testing.assert_array_equal(loaded.predict_risk(heart), model.predict_risk(heart))
    assert FastScorer.from_model(loaded).exact_fast_path

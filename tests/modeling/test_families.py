"""The families registry: every family is one object the rest of medserve asks; the MLP
keeps torch's global random state untouched; knowing the families loads no heavy runtime."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from medserve.errors import ConfigError
from medserve.evaluation.report import data_summary
from medserve.modeling.families import (
    BUILTIN,
    auto_candidates,
    family_names,
    find_family,
    get_family,
    register_family,
    registered_family,
)
from medserve.modeling.families.mlp import TorchMLPClassifier
from medserve.modeling.preprocess import build_preprocessor
from medserve.modeling.train import TrainOptions, labelled_rows


@pytest.fixture(scope="module")
def heart_xy(heart, heart_schema) -> tuple[np.ndarray, np.ndarray]:
    rows, labels, _ = labelled_rows(heart, heart_schema)
    return build_preprocessor(heart_schema).fit_transform(heart_schema.prepare(rows)), labels


def test_the_built_in_families_in_order_and_what_auto_tries():
    assert family_names() == (
        "logistic",
        "lightgbm",
        "mlp",
        "ebm",
        "text",
        "onnx",
        "transformers",
        "blend",
    )
    # The network and the EBM are opt-in; auto blends what it cross-validates itself; the
    # text family is tried where the table has notes (tests/modeling/test_text_family.py).
    assert auto_candidates() == ("logistic", "lightgbm")
    assert TrainOptions(family="auto").candidates() == auto_candidates()
    assert [family.name for family in BUILTIN] == list(family_names())


def test_unknown_family_names_the_choices():
    with pytest.raises(ConfigError, match="unknown model family 'forest'; the families are "):
        get_family("forest")
    with pytest.raises(
        ConfigError,
        match="choose auto, one of logistic, lightgbm, mlp, ebm, text, onnx, transformers, "
        "blend, or several",
    ):
        TrainOptions(family="forest").candidates()
    assert find_family("forest") is None and find_family(None) is None


@dataclass(frozen=True)
class Named:
    """Enough of a family to be registered (the registry only reads its name here)."""

    name: str
    in_auto: bool = False


def test_registration_refuses_taken_and_reserved_names_and_can_be_undone():
    for name in ("lightgbm", "auto", "", "Forest"):
        with pytest.raises(ConfigError):
            register_family(Named(name))  # type: ignore[arg-type]
    with registered_family(Named("forest", in_auto=True)):  # type: ignore[arg-type]
        assert family_names()[-1] == "forest"
        assert auto_candidates()[-1] == "forest"
    assert find_family("forest") is None
    assert family_names() == (
        "logistic",
        "lightgbm",
        "mlp",
        "ebm",
        "text",
        "onnx",
        "transformers",
        "blend",
    )


def test_knowing_the_families_loads_no_heavy_runtime():
    probe = (
        "import sys\n"
        "import medserve.modeling.families, medserve.scoring.compiled, medserve.explain\n"
        "print(' '.join(m for m in ('torch', 'lightgbm', 'interpret', 'shap') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []


def test_fitted_parameters_come_from_the_family(heart, heart_schema):
    rows, labels, _ = labelled_rows(heart, heart_schema)
    prepared = heart_schema.prepare(rows)
    quick = {"mlp": {"model__max_epochs": 3}, "lightgbm": {"model__max_trees": 40}}
    found = {}
    for name in ("logistic", "lightgbm", "mlp"):
        family = get_family(name)
        pipeline = family.build(heart_schema).set_params(**quick.get(name, {}))
        found[name] = family.fitted_params(pipeline.fit(prepared, labels))
    assert list(found["logistic"]) == ["C"] and isinstance(found["logistic"]["C"], float)
    assert list(found["lightgbm"]) == ["n_trees", "num_leaves"]
    assert isinstance(found["lightgbm"]["n_trees"], int)
    assert found["mlp"] == {"n_epochs": 3}


def test_the_report_says_how_each_family_handles_missing_values(heart, heart_schema):
    def handling(family: str | None) -> dict[str, str]:
        columns = data_summary(heart, heart_schema, family)["columns"]
        return {c["name"]: c["missing_handling"] for c in columns if c["name"] in ("chol", "cp")}

    assert handling("logistic") == {
        "chol": "median imputation with a missing indicator",
        "cp": "kept as its own level '(missing)'",
    }
    assert handling("lightgbm") == {
        "chol": "left missing: LightGBM routes missing values natively",
        "cp": "kept as its own level '(missing)'",
    }
    assert handling("ebm") == {
        "chol": "left missing: the EBM routes missing values natively",
        "cp": "left missing: the EBM gives it its own bin",
    }
    assert handling("a family not installed here")["chol"] == (
        "median imputation with a missing indicator"
    )


def test_mlp_fit_leaves_torchs_global_random_state_alone(heart_xy):
    X, y = heart_xy
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    first = TorchMLPClassifier(random_state=3, max_epochs=4).fit(X, y).predict_proba(X)
    assert torch.equal(torch.random.get_rng_state(), before)
    # Reproducible per seed, whatever the global generator holds; another seed differs.
    torch.manual_seed(99)
    again = TorchMLPClassifier(random_state=3, max_epochs=4).fit(X, y).predict_proba(X)
    other = TorchMLPClassifier(random_state=4, max_epochs=4).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-4


def test_mlp_initial_network_is_the_one_torch_would_draw_for_the_seed():
    """So a seed gives the network it gave when fit reseeded the global generator."""
    with torch.random.fork_rng():
        torch.manual_seed(5)
        layers = [torch.nn.Linear(7, 64), torch.nn.Linear(64, 32), torch.nn.Linear(32, 1)]
    network = TorchMLPClassifier()._network(7, torch.Generator().manual_seed(5))
    drawn = [module for module in network if isinstance(module, torch.nn.Linear)]
    assert len(drawn) == len(layers)
    for ours, reference in zip(drawn, layers, strict=True):
        assert torch.equal(ours.weight, reference.weight)
        assert torch.equal(ours.bias, reference.bias)

"""Only the families package knows what a family is: no module outside it tests a family
by name (``model.family == "ebm"``, a table keyed by family names) or touches a family's
concrete estimator class (``isinstance(estimator, TorchMLPClassifier)``). Prose and help
texts may name families; they are not checked."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

import medserve
from medserve.data.schema import ColumnSpec, ColumnType, Role
from medserve.errors import ConfigError
from medserve.modeling.families import family_names, get_family, reads_text

SRC = Path(medserve.__file__).parent
FAMILIES_PACKAGE = SRC / "modeling" / "families"
# The estimators' module paths before the families package: stored models' pickles name
# them, so they re-export the classes (and do nothing else).
PICKLE_PATHS = {SRC / "modeling" / "boosting.py", SRC / "modeling" / "mlp.py"}


def estimator_classes(schema) -> frozenset[str]:
    """The class name of every registered family's estimator, as its pipeline builds it."""
    found = set()
    for name in family_names():
        try:
            pipeline = get_family(name).build(_readable_by(name, schema))
        except ConfigError:  # imported, not trained: its estimator is the imported model's
            found.add("ImportedEstimator")
            continue
        found.add(type(pipeline.named_steps["model"]).__name__)
    return frozenset(found)


def _readable_by(name: str, schema):
    """``schema``, with a notes column where the family reads notes."""
    if not reads_text(name):
        return schema
    note = ColumnSpec(name="note", type="text", role="feature")
    return schema.model_copy(update={"columns": [*schema.columns, note]})


def _is_name(node: ast.AST | None, names: frozenset[str]) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in names
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_is_name(element, names) for element in node.elts)
    return False


def family_knowledge(
    source: str, names: frozenset[str], classes: frozenset[str]
) -> list[tuple[int, str]]:
    """(line, what) for each place ``source`` asks which family something is."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare) and any(
            _is_name(operand, names) for operand in (node.left, *node.comparators)
        ):
            found.append((line, f"compares with a family name: {ast.unparse(node)}"))
        elif isinstance(node, ast.Dict) and any(_is_name(key, names) for key in node.keys):
            found.append((line, "a table keyed by family names"))
        elif isinstance(node, ast.Subscript) and _is_name(node.slice, names):
            found.append((line, f"looks a family name up: {ast.unparse(node)}"))
        elif isinstance(node, ast.MatchValue) and _is_name(node.value, names):
            found.append((line, "matches a family name"))
        elif isinstance(node, ast.Name) and node.id in classes:
            found.append((line, f"uses the estimator class {node.id}"))
        elif isinstance(node, ast.Attribute) and node.attr in classes:
            found.append((line, f"uses the estimator class {node.attr}"))
        elif isinstance(node, ast.alias) and node.name.rpartition(".")[2] in classes:
            found.append((line, f"imports the estimator class {node.name}"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "medserve.modeling.families."
        ):
            module = node.module.rpartition(".")[2]  # type: ignore[union-attr]
            if module in names:
                found.append((line, f"imports the {module} family's module"))
    return found


def modules_outside_the_families() -> list[Path]:
    return [
        path
        for path in sorted(SRC.rglob("*.py"))
        if FAMILIES_PACKAGE not in path.parents and path not in PICKLE_PATHS
    ]


def test_no_module_outside_the_families_package_knows_a_family(heart_schema):
    # "text" is a family and a column type and role: `spec.type == "text"` asks the schema.
    names = frozenset(family_names()) - SCHEMA_WORDS
    classes = estimator_classes(heart_schema)
    assert {"EarlyStoppedLGBMClassifier", "TorchMLPClassifier"} <= classes
    findings = [
        f"{path.relative_to(SRC)}:{line}: {what}"
        for path in modules_outside_the_families()
        for line, what in family_knowledge(path.read_text(encoding="utf-8"), names, classes)
    ]
    assert findings == [], "ask the family instead:\n" + "\n".join(findings)


SCHEMA_WORDS = frozenset(get_args(ColumnType)) | frozenset(get_args(Role))
BUILT_IN = frozenset({"logistic", "lightgbm", "mlp", "ebm"})
CLASSES = frozenset({"EarlyStoppedLGBMClassifier", "TorchMLPClassifier", "LogisticRegressionCV"})


@pytest.mark.parametrize(
    "source",
    [
        # What scoring/, explain/ and evaluation/ did before the families package.
        'if model.family == "lightgbm" and ok:\n    pass',
        'if model.family == "ebm":\n    pass',
        'NATIVE_MISSING = {"lightgbm": "LightGBM", "ebm": "the EBM"}',
        'tolerance = TOLERANCE["mlp"]',
        'if family in ("logistic", "lightgbm"):\n    pass',
        "if isinstance(estimator, EarlyStoppedLGBMClassifier):\n    pass",
        "from medserve.modeling.mlp import TorchMLPClassifier",
        "from medserve.modeling.families.lightgbm import SINGLE_THREAD_ROWS",
        'match family:\n    case "ebm":\n        pass',
    ],
)
def test_the_check_finds_each_way_of_asking_which_family(source):
    assert family_knowledge(source, BUILT_IN, CLASSES)


@pytest.mark.parametrize(
    "source",
    [
        '"""LightGBM routes missing values natively; the ebm is opt-in."""',
        "help = f\"auto|{'|'.join(family_names())}\"",
        'logging.getLogger("lightgbm").setLevel(logging.ERROR)',
        'LIBRARIES = ("numpy", "lightgbm", "torch")',
        "if model.family == AUTO or find_family(model.family) is None:\n    pass",
        "from sklearn.linear_model import LogisticRegression",
    ],
)
def test_the_check_lets_prose_help_and_registry_lookups_through(source):
    assert family_knowledge(source, BUILT_IN, CLASSES) == []


@pytest.mark.parametrize("path", sorted(PICKLE_PATHS), ids=lambda path: path.name)
def test_the_old_estimator_paths_only_re_export(path):
    """They exist for unpickling alone: a docstring, one import from the families, __all__."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    assert [type(node) for node in body] == [ast.Expr, ast.ImportFrom, ast.Assign]
    assert body[1].module.startswith("medserve.modeling.families.")

"""The layers below the command line do not speak it: no error raised outside ``cli/``
spells a command-line flag (``--target``). They name options with ``option("target")``,
which the CLI renders as ``--target`` and HTTP and library callers as ``the 'target'
option``. Prose, docstrings and help texts may name flags; only raised messages are checked.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path

import typer.main

import medserve
from medserve.api import train as api_train
from medserve.cli import app
from medserve.cli._common import cli_option
from medserve.data.io import ReadOptions
from medserve.flows import TrainRequest
from medserve.flows.evaluate import evaluate_stored
from medserve.flows.fhir_binding import store as store_binding
from medserve.flows.imports import import_model, importable_families
from medserve.flows.monitor import purge as purge_predictions
from medserve.flows.monitor import record_outcome_file
from medserve.flows.predict import predict_file
from medserve.flows.refit import refit_stored
from medserve.scale.batch import predict_on_ray
from medserve.serve.ray_serve import Scaling
from medserve.storage import Registry

SRC = Path(medserve.__file__).parent
CLI_PACKAGE = SRC / "cli"
# A flag as a shell user types it: two dashes, a lower-case letter (not CSS's `--ink:`).
CLI_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*(?![\w:-])")


def _strings(node: ast.AST) -> list[tuple[int, str]]:
    return [
        (child.lineno, child.value)
        for child in ast.walk(node)
        if isinstance(child, ast.Constant) and isinstance(child.value, str)
    ]


def _bound(node: ast.AST) -> tuple[list[ast.AST], ast.AST | None]:
    """The targets a binding node names and the expression it binds them from."""
    if isinstance(node, ast.Assign):
        return node.targets, node.value
    if isinstance(node, ast.AugAssign | ast.AnnAssign | ast.NamedExpr):
        return [node.target], node.value
    if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
        return [node.target], node.iter
    return [], None


def flags_in_raised_messages(source: str) -> list[tuple[int, str]]:
    """(line, flag) for each CLI flag spelled in a string that ``source`` raises: inside a
    ``raise`` statement, or bound to a name (assigned, looped over) that a ``raise`` of the
    same function uses."""
    found: set[tuple[int, str]] = set()
    tree = ast.parse(source)
    for scope in ast.walk(tree):
        if not isinstance(scope, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = ast.Module(body=scope.body, type_ignores=[])
        raised = [node.exc for node in ast.walk(body) if isinstance(node, ast.Raise) and node.exc]
        used = {name.id for exc in raised for name in ast.walk(exc) if isinstance(name, ast.Name)}
        messages = list(raised)
        for node in ast.walk(body):
            targets, value = _bound(node)
            names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            if value is not None and names & used:
                messages.append(value)
        for message in messages:
            for line, text in _strings(message):
                found.update((line, flag) for flag in CLI_FLAG.findall(text))
    return sorted(found)


def modules_outside_the_cli() -> list[Path]:
    return [path for path in sorted(SRC.rglob("*.py")) if CLI_PACKAGE not in path.parents]


def test_the_scan_finds_flags_in_raised_messages():
    source = '''
def check(value):
    message = "name the outcome with --target COLUMN"
    if value:
        raise ValueError(message)
    raise ValueError(f"--test-size {value} must lie between 0.05 and 0.5")

def loop(frame):
    for label, names in (("--ignore", []), ("schema file", [])):
        raise ValueError(f"{label} names columns not in the data")

def prose():
    """Train with ``--deid``."""
    notice = "--cv reduced to 3 folds"
    raise ValueError(f"the {option('target')} option")
'''
    assert flags_in_raised_messages(source) == [
        (3, "--target"),
        (6, "--test-size"),
        (9, "--ignore"),
    ]


def test_no_error_raised_outside_the_cli_spells_a_cli_flag():
    found = [
        f"{path.relative_to(SRC)}:{line}: {flag}"
        for path in modules_outside_the_cli()
        for line, flag in flags_in_raised_messages(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "name options with medserve.errors.option(...), not as CLI flags"


def options_named_outside_the_cli() -> set[str]:
    """Every ``option("name")`` an error outside ``cli/`` names."""
    return {
        node.args[0].value
        for path in modules_outside_the_cli()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "option"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def command_line_flags() -> set[str]:
    command = typer.main.get_command(app)
    flags: set[str] = set()
    stack = [command]
    while stack:
        current = stack.pop()
        stack.extend(getattr(current, "commands", {}).values())
        for parameter in current.params:
            flags.update(parameter.opts)
    return flags


def test_every_option_an_error_names_is_a_flag_and_a_library_parameter():
    named = options_named_outside_the_cli()
    assert len(named) >= 10  # the scan sees them
    assert {cli_option(name) for name in named} <= command_line_flags()
    parameters = {field.name for field in dataclasses.fields(TrainRequest)}
    parameters |= {field.name for field in dataclasses.fields(ReadOptions)}  # TrainRequest.read
    parameters |= {field.name for field in dataclasses.fields(Scaling)}  # serve on Ray
    functions = (
        api_train,  # engine: where the search fits (scale.training)
        evaluate_stored,
        predict_file,
        predict_on_ray,  # query: the SQL whose rows are scored
        Registry.archive,
        Registry.delete,
        store_binding,
        purge_predictions,
        record_outcome_file,
        refit_stored,
    )
    for function in functions:
        parameters |= set(inspect.signature(function).parameters)
    # import_model(settings, name, schema_file=…, onnx=PATH | transformers=PATH)
    parameters |= set(inspect.signature(import_model).parameters) | set(importable_families())
    assert named <= parameters

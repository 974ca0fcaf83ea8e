"""Shared pieces of the command line: consoles, error handling, tables, progress."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from medserve.config import Settings
from medserve.errors import (
    AuthError,
    ConfigError,
    DataError,
    ExplanationUnavailable,
    Forbidden,
    IntegrityError,
    MedserveError,
    ModelNotFound,
    PredictionNotFound,
    RegistryError,
)
from medserve.evaluation import Metric

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object, nothing else.")]

# The exit status of each kind of error; a subclass not listed takes its nearest listed
# base's (SchemaError is a DataError: 2). Scripts rely on these: they do not change.
EXIT_CODES: dict[type, int] = {
    MedserveError: 1,
    DataError: 2,
    ConfigError: 2,
    ExplanationUnavailable: 2,
    ModelNotFound: 3,
    PredictionNotFound: 3,
    IntegrityError: 4,
    RegistryError: 5,
    AuthError: 6,
    Forbidden: 6,
}


def exit_code(error: MedserveError | type[MedserveError]) -> int:
    """The exit status the command line ends with for ``error`` (an error or its class)."""
    kind = error if isinstance(error, type) else type(error)
    return next(EXIT_CODES[base] for base in kind.__mro__ if base in EXIT_CODES)


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """MedserveError → one readable line on stderr and its exit code; no traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.getLogger("lightgbm").setLevel(logging.ERROR)
        try:
            return command(*args, **kwargs)
        except MedserveError as error:
            message, code = error.render(cli_option), exit_code(error)
            err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
            if kwargs.get("as_json"):  # a program reading stdout learns what went wrong too
                print_json({"error": _error_json(error, message, code)})
            raise typer.Exit(code) from None
        except KeyboardInterrupt:
            err.print("interrupted: nothing was registered")
            raise typer.Exit(130) from None

    return wrapper


def _error_json(error: MedserveError, message: str, code: int) -> dict[str, Any]:
    shown: dict[str, Any] = {"code": error.code, "message": message, "exit_code": code}
    if error.location is not None:
        shown["location"] = error.location.to_dict()
    return shown


# Options the command line spells other than as their Python name dashed: one value per
# flag (``--group site --group sex``) for the library's list.
_FLAGS = {"groups": "--group", "family": "--model", "schema_file": "--schema"}


def cli_option(name: str) -> str:
    """An option as the command line spells it: ``positive_if`` → ``--positive-if``."""
    return _FLAGS.get(name) or "--" + name.replace("_", "-")


def settings() -> Settings:
    return Settings()


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def metric_cell(metric: Metric | dict) -> str:
    if isinstance(metric, dict):
        estimate, ci = metric.get("estimate"), metric.get("ci95") or [None, None]
    else:
        estimate, ci = metric.estimate, metric.ci95
    return f"{fmt(estimate)}  ({fmt(ci[0])}–{fmt(ci[1])})"


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("estimate (95% CI)", justify="right")
    for name, metric in metrics.items():
        if name != "split":
            table.add_row(name, metric_cell(metric))
    return table


def schema_table(schema: Any) -> Table:
    table = Table(title="Schema (inferred; override with --schema FILE)", title_justify="left")
    for column in ("column", "type", "role", "missing", "values"):
        table.add_column(column)
    for spec in schema.columns:
        if spec.categories:
            values = ", ".join(spec.categories[:5]) + (" …" if len(spec.categories) > 5 else "")
        elif spec.minimum is not None:
            values = f"{spec.minimum:g} – {spec.maximum:g}"
        else:
            values = ""
        if spec.missing_tokens:
            values += f"  (missing: {', '.join(spec.missing_tokens)})"
        table.add_row(spec.name, spec.type, spec.role, f"{spec.missing_fraction:.0%}", values)
    return table


def leaderboard_table(rows: list[Any]) -> Table:
    table = Table(title="Cross-validation leaderboard", title_justify="left")
    for column in ("family", "AUROC (sd)", "log-loss", "Brier", "fit s", ""):
        table.add_column(column, justify="left" if column == "family" else "right")
    for row in sorted(rows, key=lambda r: -(r.auroc_mean if r.error is None else -1)):
        if row.error:
            status = "skipped" if row.error.startswith("skipped") else "failed"
            reason = escape(row.error.removeprefix("skipped: "))
            table.add_row(row.family, status, "", "", "", reason)
            continue
        table.add_row(
            row.family,
            f"{row.auroc_mean:.3f} ({row.auroc_sd:.3f})",
            f"{row.log_loss:.3f}",
            f"{row.brier:.3f}",
            f"{row.fit_seconds:.2f}",
            "[bold green]selected[/]" if row.selected else "",
        )
    return table


class ProgressBar:
    """Renders the library's progress callback as a Rich bar on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = Progress(
            TextColumn("{task.description:<40}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        self.task: Any = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()

    def __call__(self, what: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.task is None:
            self.task = self.bar.add_task(what, total=total)
        self.bar.update(self.task, description=what, completed=done, total=total)

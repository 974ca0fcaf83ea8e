"""medserve's command line: parses, calls the library, prints (Typer + Rich)."""

from __future__ import annotations

import functools
import json
import logging
import sys
import warnings
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from medserve.config import Settings
from medserve.errors import MedserveError
from medserve.evaluation import Metric

app = typer.Typer(
    name="medserve",
    help="Clinical risk models as a service: train, evaluate, register and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, inspect and stage registered models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object, nothing else.")]


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """MedserveError → one readable line on stderr and its exit code; no traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        warnings.filterwarnings("ignore")
        logging.getLogger("lightgbm").setLevel(logging.ERROR)
        try:
            return command(*args, **kwargs)
        except MedserveError as error:
            err.print(f"[bold red]error:[/] {error.message}", soft_wrap=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted: nothing was registered")
            raise typer.Exit(130) from None

    return wrapper


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
        table.add_row(
            spec.name, spec.type, spec.role, f"{spec.missing_fraction:.0%}", values
        )
    return table


def leaderboard_table(rows: list[Any]) -> Table:
    table = Table(title="Cross-validation leaderboard (training split)", title_justify="left")
    for column in ("family", "AUROC (sd)", "log-loss", "Brier", "fit s", ""):
        table.add_column(column, justify="left" if column == "family" else "right")
    for row in sorted(rows, key=lambda r: -(r.auroc_mean if r.error is None else -1)):
        if row.error:
            table.add_row(row.family, "failed", "", "", "", row.error[:40])
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


@app.command()
@handle_errors
def train(
    data: Annotated[Path, typer.Argument(help="CSV, Parquet or .npy table of patients.")],
    target: Annotated[str | None, typer.Option(help="Outcome column (.npy: the last).")] = None,
    positive: Annotated[str | None, typer.Option(help="Value of the target that is the event.")] = None,
    positive_if: Annotated[
        str | None, typer.Option("--positive-if", help="Binarise a numeric target, e.g. '>0'.")
    ] = None,
    model: Annotated[str, typer.Option(help="auto|logistic|lightgbm|mlp|ebm")] = "auto",
    name: Annotated[str | None, typer.Option(help="Registry name (default: file name).")] = None,
    schema: Annotated[Path | None, typer.Option(help="YAML/JSON schema overrides.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for splits and models.")] = 0,
    test_size: Annotated[float, typer.Option(help="Share of rows held out for testing.")] = 0.2,
    cv: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    threshold_for: Annotated[
        str | None,
        typer.Option("--threshold-for", help="youden (default), sensitivity=0.90 or specificity=0.95"),
    ] = None,
    missing: Annotated[
        list[str] | None,
        typer.Option(help="COLUMN=VALUE[,VALUE] meaning 'not measured'; COLUMN= keeps zeros."),
    ] = None,
    ignore: Annotated[list[str] | None, typer.Option(help="Column to leave out.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Train, evaluate on a held-out split and register a risk model."""
    from medserve.flows import TrainRequest, parse_missing, train_and_register

    request = TrainRequest(
        data=data,
        target=target,
        positive=positive,
        positive_if=positive_if,
        family=model,
        name=name,
        schema_file=schema,
        seed=seed,
        test_size=test_size,
        cv=cv,
        threshold_for=threshold_for,
        missing=parse_missing(missing or []),
        ignore=ignore or [],
    )
    with ProgressBar(enabled=not as_json) as progress:
        outcome = train_and_register(settings(), request, progress)
    if as_json:
        print_json(outcome.to_json())
        return
    for notice in outcome.notices:
        err.print(f"[yellow]notice:[/] {notice}", soft_wrap=True)
    out.print(schema_table(outcome.schema))
    out.print(leaderboard_table(outcome.leaderboard))
    version = outcome.version
    out.print(
        metrics_table(
            outcome.metrics,
            f"Held-out test metrics ({outcome.n_test} rows; trained on {outcome.n_train})",
        )
    )
    out.print(
        f"Registered [bold]{version.ref}[/] ({version.family}, stage {version.stage}, "
        f"threshold {version.threshold:.3f})\n"
        f"  artifact: {Settings().home / version.artifact_path}\n"
        f"  report:   {version.report_path}"
    )


@app.command()
@handle_errors
def evaluate(
    model: Annotated[str, typer.Argument(help="NAME or NAME:VERSION")],
    data: Annotated[Path, typer.Argument(help="Labelled data from another site or period.")],
    target: Annotated[str | None, typer.Option(help="Outcome column, if named differently.")] = None,
    seed: int = 0,
    as_json: JsonFlag = False,
) -> None:
    """External validation of a stored model on new labelled data."""
    from medserve.flows import evaluate_stored

    outcome = evaluate_stored(settings(), model, data, target=target, seed=seed)
    if as_json:
        print_json(outcome.to_json())
        return
    for notice in outcome.notices:
        err.print(f"[yellow]notice:[/] {notice}")
    out.print(
        metrics_table(
            outcome.metrics,
            f"{outcome.version.ref} on {data.name} ({outcome.n_rows} rows, "
            f"{outcome.n_events} events)",
        )
    )
    out.print(f"report: {outcome.report_path}")


@app.command()
@handle_errors
def predict(
    model: Annotated[str, typer.Argument(help="NAME or NAME:VERSION")],
    data: Annotated[Path, typer.Argument(help="Records to score (same columns as training).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write scores.")],
    as_json: JsonFlag = False,
) -> None:
    """Batch scoring: writes the input columns plus `risk` and `label`."""
    from medserve.flows import predict_file

    version, rows = predict_file(settings(), model, data, output)
    if as_json:
        print_json({"model": version.name, "version": version.version, "rows": rows,
                    "output": str(output)})
    else:
        out.print(f"scored {rows} rows with {version.ref} → {output}")


@app.command("schema")
@handle_errors
def show_schema(
    data: Annotated[Path, typer.Argument(help="Table to inspect.")],
    target: Annotated[str | None, typer.Option(help="Outcome column.")] = None,
    positive: str | None = None,
    positive_if: Annotated[str | None, typer.Option("--positive-if")] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write an editable YAML override file.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the schema medserve infers for a table (and write it out for editing)."""
    import yaml

    from medserve.data import default_target, infer_schema, read_table

    frame = read_table(data)
    schema = infer_schema(
        frame,
        target=target or default_target(data),
        positive=positive,
        positive_if=positive_if,
    )
    if output is not None:
        columns = {
            c.name: {"type": c.type, "role": c.role, "missing_tokens": c.missing_tokens}
            for c in schema.columns
        }
        outcome = schema.outcome
        document = {"target": outcome.column, "columns": columns}
        if outcome.positive_if:
            document["positive_if"] = outcome.positive_if
        else:
            document["positive"] = outcome.positive
        output.write_text(yaml.safe_dump(document, sort_keys=False))
    if as_json:
        print_json(schema.model_dump(mode="json"))
        return
    for notice in schema.notices:
        err.print(f"[yellow]notice:[/] {notice}", soft_wrap=True)
    out.print(schema_table(schema))
    out.print(f"outcome: {schema.outcome.describe()}")
    if output is not None:
        out.print(f"wrote {output}: edit it and pass it to train with --schema")


def version_rows(versions: list[Any]) -> Table:
    table = Table(title="Registered models", title_justify="left")
    for column in ("model", "version", "stage", "family", "AUROC", "threshold", "created"):
        table.add_column(column)
    for v in versions:
        auroc = (v.metrics.get("auroc") or {}).get("estimate")
        table.add_row(v.name, str(v.version), v.stage, v.family, fmt(auroc), fmt(v.threshold),
                      v.created_at.strftime("%Y-%m-%d %H:%M"))
    return table


@models_app.command("list")
@handle_errors
def models_list(as_json: JsonFlag = False) -> None:
    """Every registered model version."""
    from medserve.registry import Registry

    with Registry(settings()) as registry:
        versions = registry.list()
    if as_json:
        print_json({"models": [v.to_dict() for v in versions]})
    elif not versions:
        out.print("no models yet: train one with `medserve train DATA --target COLUMN`")
    else:
        out.print(version_rows(versions))


@models_app.command("show")
@handle_errors
def models_show(
    model: Annotated[str, typer.Argument(help="NAME (production or latest) or NAME:VERSION")],
    as_json: JsonFlag = False,
) -> None:
    """One model version: metadata, schema, metrics, lineage."""
    from medserve.data import Schema
    from medserve.registry import Registry

    with Registry(settings()) as registry:
        version = registry.get(model)
    if as_json:
        print_json(version.to_dict())
        return
    out.print(version_rows([version]))
    out.print(schema_table(Schema.model_validate(version.schema)))
    out.print(metrics_table(version.metrics, "Held-out test metrics"))
    lineage = version.lineage
    out.print(f"data sha256: {version.data_sha256}")
    out.print(f"libraries:   {json.dumps(lineage.get('libraries', {}))}")
    out.print(f"report:      {version.report_path}")


@models_app.command("promote")
@handle_errors
def models_promote(model: Annotated[str, typer.Argument(help="NAME:VERSION")]) -> None:
    """Move a version to production (the previous production version is archived)."""
    from medserve.registry import Registry

    with Registry(settings()) as registry:
        version = registry.promote(model)
    out.print(f"{version.ref} is now in production")


@models_app.command("archive")
@handle_errors
def models_archive(model: Annotated[str, typer.Argument(help="NAME:VERSION")]) -> None:
    """Archive a version."""
    from medserve.registry import Registry

    with Registry(settings()) as registry:
        version = registry.archive(model)
    out.print(f"{version.ref} archived")


def bundled_dataset(name: str) -> Path:
    return Path(str(resources.files("medserve") / "datasets" / name))


@app.command()
@handle_errors
def demo() -> None:
    """Train on the bundled UCI heart disease data (outcome: num > 0) and report."""
    data = bundled_dataset("heart_disease_uci.csv")
    err.print(f"Training on bundled UCI heart disease data ({data.name}), outcome num > 0")
    train(
        data=data,
        target="num",
        positive=None,
        positive_if=">0",
        model="auto",
        name="heart-disease",
        schema=None,
        seed=0,
        test_size=0.2,
        cv=5,
        threshold_for=None,
        missing=None,
        ignore=None,
        as_json=False,
    )


def main() -> None:
    app()

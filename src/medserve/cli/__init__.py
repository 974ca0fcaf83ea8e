"""medserve's command line (Typer + Rich): thin shells that parse, call the library, print."""

from __future__ import annotations

from typing import Annotated

import typer

from medserve.cli import (
    audit,
    db,
    deid,
    demo,
    evaluate,
    fhir,
    keys,
    models,
    monitor,
    predict,
    recalibrate,
    report,
    serve,
    train,
)

app = typer.Typer(
    name="medserve",
    help="Clinical risk models as a service: train, evaluate, register and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: typer 0.29 with rich shows every flag as taking a value ("--json <bool>").
    rich_markup_mode=None,
)
for commands in (
    train.app,
    evaluate.app,
    predict.app,
    recalibrate.app,
    report.app,
    serve.app,
    demo.app,
    deid.app,
    monitor.app,
):
    app.registered_commands += commands.registered_commands


def _version(shown: bool) -> None:
    if shown:
        from medserve import __version__

        typer.echo(f"medserve {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Clinical risk models as a service: train, evaluate, register and serve."""


app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(db.app, name="db")
app.add_typer(fhir.app, name="fhir")
app.add_typer(monitor.predictions, name="predictions")


def main() -> None:
    app()

"""medserve's command line (Typer + Rich): thin shells that parse, call the library, print."""

from __future__ import annotations

import typer

from medserve.cli import models, train

app = typer.Typer(
    name="medserve",
    help="Clinical risk models as a service: train, evaluate, register and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.registered_commands += train.app.registered_commands
app.add_typer(models.app, name="models")


def main() -> None:
    app()

"""`medserve evaluate`: external validation of a stored model on new labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medserve.cli._common import (
    JsonFlag,
    err,
    handle_errors,
    metrics_table,
    out,
    print_json,
    settings,
)
from medserve.cli.options import (
    DecimalOption,
    EncodingOption,
    GroupOption,
    IntendedUseOption,
    ModelCardOption,
    SepOption,
    read_options,
)

app = typer.Typer()


@app.command()
@handle_errors
def evaluate(
    model: Annotated[str, typer.Argument(help="NAME or NAME:VERSION")],
    data: Annotated[Path, typer.Argument(help="Labelled data from another site or period.")],
    target: Annotated[
        str | None, typer.Option(help="Outcome column, if named differently.")
    ] = None,
    seed: int = 0,
    group: GroupOption = None,
    intended_use: IntendedUseOption = None,
    model_card: ModelCardOption = None,
    sep: SepOption = None,
    decimal: DecimalOption = None,
    encoding: EncodingOption = None,
    as_json: JsonFlag = False,
) -> None:
    """External validation of a stored model on new labelled data, with its report."""
    from medserve.flows import evaluate_stored

    outcome = evaluate_stored(
        settings(),
        model,
        data,
        target=target,
        seed=seed,
        groups=group or [],
        intended_use=intended_use,
        model_card=model_card,
        read=read_options(sep, decimal, encoding),
    )
    if as_json:
        print_json(outcome.to_json())
        return
    for notice in outcome.notices:  # warnings' text may hold brackets: not markup
        err.print(f"[yellow]notice:[/] {escape(notice)}", soft_wrap=True)
    out.print(
        metrics_table(
            outcome.metrics,
            f"{outcome.version.ref} on {data.name} ({outcome.n_rows} rows, "
            f"{outcome.n_events} events)",
        )
    )
    out.print(f"report: {outcome.report_html}\n  JSON: {outcome.report_path}")

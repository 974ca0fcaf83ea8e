"""`medserve evaluate`: external validation of a stored model on new labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from medserve.cli._common import (
    JsonFlag,
    err,
    handle_errors,
    metric_cell,
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

if TYPE_CHECKING:
    from medserve.flows.evaluate import DevelopmentComparison

app = typer.Typer()


@app.command()
@handle_errors
def evaluate(
    model: Annotated[str, typer.Argument(help="NAME or NAME:VERSION")],
    data: Annotated[Path, typer.Argument(help="Labelled data from another site or period.")],
    target: Annotated[
        str | None, typer.Option(help="Outcome column, if named differently.")
    ] = None,
    positive: Annotated[
        str | None,
        typer.Option(help="Value of the outcome that is the event here, if coded differently."),
    ] = None,
    positive_if: Annotated[
        str | None,
        typer.Option("--positive-if", help="Binarise a numeric outcome here, e.g. '>0'."),
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
        positive=positive,
        positive_if=positive_if,
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
    if outcome.comparison is not None:
        out.print(comparison_table(outcome.comparison))
    out.print(f"report: {outcome.report_html}\n  JSON: {outcome.report_path}")


def comparison_table(comparison: DevelopmentComparison) -> Table:
    """Development (as the training report measured it) and external performance."""
    developed = comparison.development_rows
    split = comparison.development_split or "held-out test"
    table = Table(title=f"Development ({split}) beside external", title_justify="left")
    table.add_column("")
    table.add_column(
        f"development ({developed} rows)" if developed is not None else "development",
        justify="right",
    )
    table.add_column(f"external ({comparison.external_rows} rows)", justify="right")
    before = comparison.development_event_rate
    table.add_row(
        "event rate",
        f"{before:.1%}" if before is not None else "—",
        f"{comparison.external_event_rate:.1%}",
    )
    for name, (development, external) in comparison.metrics.items():
        table.add_row(
            name,
            metric_cell(development.model_dump()) if development is not None else "—",
            metric_cell(external.model_dump()),
        )
    return table

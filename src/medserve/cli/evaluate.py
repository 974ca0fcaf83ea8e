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
    LocalPositiveIfOption,
    LocalPositiveOption,
    LocalTargetOption,
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
    target: LocalTargetOption = None,
    positive: LocalPositiveOption = None,
    positive_if: LocalPositiveIfOption = None,
    seed: int = 0,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Refuse the file (exit 2, no report) if any labelled row holds a value the "
            "HTTP API refuses (422): out of the plausible range, unseen level, unreadable. By "
            "default such rows are measured and counted in a notice.",
        ),
    ] = False,
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
        strict=strict,
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
    development, external = comparison.development, comparison.external
    split = development.split or "held-out test"
    table = Table(title=f"Development ({split}) beside external", title_justify="left")
    table.add_column("")
    table.add_column(
        f"development ({development.rows} rows)" if development.rows is not None else "development",
        justify="right",
    )
    table.add_column(f"external ({external.rows} rows)", justify="right")
    before = development.event_rate
    table.add_row(
        "event rate", f"{before:.1%}" if before is not None else "—", f"{external.event_rate:.1%}"
    )
    for name, measured in external.metrics.items():
        developed = development.metrics.get(name)
        table.add_row(
            name,
            metric_cell(developed.model_dump()) if developed is not None else "—",
            metric_cell(measured.model_dump()),
        )
    return table

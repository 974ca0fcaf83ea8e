"""`medserve recalibrate NAME --data FILE`: local updating by logistic recalibration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

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
    LocalPositiveIfOption,
    LocalPositiveOption,
    LocalTargetOption,
    SepOption,
    read_options,
)
from medserve.data import ReadOptions
from medserve.errors import ConfigError

app = typer.Typer()


@app.command()
@handle_errors
def recalibrate(
    model: Annotated[str, typer.Argument(help="NAME or NAME:VERSION (default: production).")],
    data: Annotated[Path, typer.Option("--data", help="The local site's labelled data.")],
    target: LocalTargetOption = None,
    positive: LocalPositiveOption = None,
    positive_if: LocalPositiveIfOption = None,
    method: Annotated[
        Literal["auto", "intercept", "slope"],
        typer.Option(
            help="intercept: calibration-in-the-large only; slope: intercept and slope; auto: "
            "the slope only when a likelihood-ratio test (p < 0.05) asks for it.",
        ),
    ] = "auto",
    seed: int = 0,
    refit: Annotated[
        bool,
        typer.Option(
            "--refit",
            help="Refit the model on the local data instead (same family, features and "
            "outcome; a new training report). Never done unless asked.",
        ),
    ] = False,
    sep: SepOption = None,
    decimal: DecimalOption = None,
    encoding: EncodingOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Recalibrate a stored model to local outcomes (the model is not refitted) and register
    it as a new candidate version, its parent in the lineage; prints calibration before and
    after on the local data (after: cross-fitted)."""
    from medserve.flows.recalibrate import SHOWN, recalibrate_stored

    if refit:
        if method != "auto":
            raise ConfigError("--method chooses a recalibration; --refit trains anew: give one")
        _refit(model, data, target, positive, positive_if, read_options(sep, decimal, encoding),
               as_json)  # fmt: skip
        return
    outcome = recalibrate_stored(
        settings(),
        model,
        data,
        target=target,
        positive=positive,
        positive_if=positive_if,
        method=method,
        read=read_options(sep, decimal, encoding),
        seed=seed,
    )
    if as_json:
        print_json(outcome.to_json())
        return
    update = outcome.update
    out.print(
        f"Registered {outcome.version.ref} ({outcome.version.stage}): {outcome.parent.ref} "
        f"recalibrated on {outcome.n_rows} rows ({outcome.n_events} events), {update.method} "
        f"(intercept {update.intercept:+.3f}, slope {update.slope:.3f}; slope test p = "
        f"{update.slope_p:.3g})"
    )
    table = Table(title="Calibration on the local data")
    for column in ("metric", "before", "after (cross-fitted)"):
        table.add_column(column)
    table.add_row(
        "observed / expected",
        f"{outcome.observed_expected[0]:.3f}",
        f"{outcome.observed_expected[1]:.3f}",
    )
    for name in SHOWN:
        table.add_row(
            name.replace("_", " "),
            metric_cell(outcome.before[name]),
            metric_cell(outcome.after[name]),
        )
    out.print(table)


def _refit(
    model: str,
    data: Path,
    target: str | None,
    positive: str | None,
    positive_if: str | None,
    read: ReadOptions | None,
    as_json: bool,
) -> None:
    from medserve.flows.refit import refit_stored

    outcome = refit_stored(
        settings(), model, data, target=target, positive=positive, positive_if=positive_if,
        read=read,
    )  # fmt: skip
    if as_json:
        print_json(outcome.to_json())
        return
    version = outcome.version
    out.print(
        f"Registered {version.ref} ({version.stage}): {version.lineage.get('parent')} refitted "
        f"on {outcome.n_train + outcome.n_test} local rows ({version.family})"
    )
    out.print(metrics_table(outcome.metrics, title="Internal validation on the local data"))
    for notice in outcome.notices:
        err.print(f"[yellow]note:[/yellow] {escape(notice)}")
    out.print(f"report: {outcome.report_html}")

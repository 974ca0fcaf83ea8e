"""`medserve predict`: batch scoring of a file with a stored model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medserve.cli._common import JsonFlag, handle_errors, out, print_json, settings
from medserve.cli.deid import RawCellsFlag
from medserve.cli.options import DecimalOption, EncodingOption, SepOption, read_options

app = typer.Typer()


@app.command()
@handle_errors
def predict(
    model: Annotated[str, typer.Argument(help="NAME or NAME:VERSION")],
    data: Annotated[Path, typer.Argument(help="Records to score (same columns as training).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write scores.")],
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Add risk_band, explanation_summary and explanation (JSON: space, method, "
            "base_value, contributions per column) to every row.",
        ),
    ] = False,
    score_unseen_levels: Annotated[
        bool,
        typer.Option(
            "--score-unseen-levels",
            help="Score levels never seen in training as no known level (explanations mark "
            "them) instead of refusing the file, as the HTTP API refuses them.",
        ),
    ] = False,
    raw_cells: RawCellsFlag = False,
    sep: SepOption = None,
    decimal: DecimalOption = None,
    encoding: EncodingOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Batch scoring: writes the input columns plus `risk` and `label`."""
    from medserve.flows import predict_file

    version, rows = predict_file(
        settings(),
        model,
        data,
        output,
        explain=explain,
        score_unseen_levels=score_unseen_levels,
        raw_cells=raw_cells,
        read=read_options(sep, decimal, encoding),
    )
    if as_json:
        print_json(
            {"model": version.name, "version": version.version, "rows": rows, "output": str(output)}
        )
    else:
        out.print(f"scored {rows} rows with {version.ref} → {output}")

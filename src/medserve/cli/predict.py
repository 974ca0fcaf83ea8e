"""`medserve predict`: batch scoring of a file with a stored model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medserve.cli._common import JsonFlag, err, handle_errors, out, print_json, settings
from medserve.cli.deid import RawCellsFlag
from medserve.cli.options import DecimalOption, EncodingOption, SepOption, read_options
from medserve.errors import ConfigError

app = typer.Typer()


@app.command()
@handle_errors
def predict(
    model: Annotated[str, typer.Argument(help="NAME or NAME:VERSION")],
    data: Annotated[
        str,
        typer.Argument(
            help="Records to score (same columns as training). With --engine ray: Parquet "
            "(a file, a folder of shards, a glob) or, with --query, a postgresql:// URL.",
            show_default=False,
        ),
    ],
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
            "them; the validation column says 'category') instead of refusing the file, as "
            "the HTTP API refuses them.",
        ),
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Refuse the file (exit 2, nothing written) if any row holds a value the HTTP "
            "API refuses (422): out of the plausible range, unseen level, unreadable. By "
            "default out-of-range values are scored, named per row in the validation column "
            "and counted in a notice.",
        ),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="Where the rows are scored: local (this process, any table format) or ray "
            "(Ray Data: batches scored by actors of one CPU on MEDSERVE_RAY_ADDRESS or a "
            "local Ray; writes a folder of Parquet shards at --output).",
        ),
    ] = "local",
    query: Annotated[
        str | None,
        typer.Option(
            help="With --engine ray and a postgresql:// URL as DATA: the SQL query whose "
            "rows are scored (run in a read-only transaction).",
            show_default=False,
        ),
    ] = None,
    raw_cells: RawCellsFlag = False,
    sep: SepOption = None,
    decimal: DecimalOption = None,
    encoding: EncodingOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Batch scoring: writes the input columns plus `validation` (the HTTP API's rules each
    row breaks, e.g. "age: range"; empty when it fits), `risk` and `label`."""
    from medserve.flows import predict_file
    from medserve.scale.cluster import check_engine

    if check_engine(engine) == "ray":
        if sep or decimal or encoding or raw_cells:
            raise ConfigError(
                "--sep, --decimal, --encoding and --raw-cells are for CSV files; "
                "--engine ray reads and writes Parquet"
            )
        from medserve.scale.batch import predict_on_ray

        outcome = predict_on_ray(
            settings(),
            model,
            data,
            output,
            query=query,
            explain=explain,
            score_unseen_levels=score_unseen_levels,
            strict=strict,
        )
    else:
        if query is not None:
            raise ConfigError("--query is for --engine ray, with a postgresql:// URL as DATA")
        outcome = predict_file(
            settings(),
            model,
            Path(data),
            output,
            explain=explain,
            score_unseen_levels=score_unseen_levels,
            strict=strict,
            raw_cells=raw_cells,
            read=read_options(sep, decimal, encoding),
        )
    version = outcome.version
    for notice in outcome.notices:
        err.print(f"[yellow]notice:[/] {escape(notice)}", soft_wrap=True)
    if as_json:
        print_json(
            {
                "model": version.name,
                "version": version.version,
                "rows": outcome.n_rows,
                "flagged_rows": outcome.n_flagged,
                "notices": outcome.notices,
                "output": str(output),
            }
        )
    else:
        flagged = f" ({outcome.n_flagged} flagged; --strict refuses such files)"
        shown = flagged if outcome.n_flagged else ""
        out.print(f"scored {outcome.n_rows} rows with {version.ref}{shown} → {output}")

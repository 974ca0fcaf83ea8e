"""`medserve deid`: strip or pseudonymise identifiers (HIPAA Safe Harbor) and show what changed."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from medserve.cli._common import (
    JsonFlag,
    ProgressBar,
    err,
    handle_errors,
    out,
    print_json,
    settings,
)
from medserve.cli.options import DecimalOption, EncodingOption, SepOption, read_options
from medserve.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from medserve.deid import ColumnOutcome, DeidResult, ReviewFlag

app = typer.Typer()
OUTPUT_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
# Shared with `medserve predict`: both write tables people open in spreadsheets.
RawCellsFlag = Annotated[
    bool,
    typer.Option(
        "--raw-cells",
        help="Write CSV cells exactly as they are. By default a text cell that starts with "
        "= + - @, a tab or a carriage return gets a leading ' so that a spreadsheet shows "
        "it instead of running it as a formula (numbers stay numbers).",
    ),
]


HELP = (
    "De-identify a table (HIPAA Safe Harbor) and print what was done to each column.\n\n"
    "Identifier columns, found by name and content, are dropped or replaced by keyed "
    "pseudonyms (the same patient gets the same pseudonym in every file under this medserve "
    "home's key); dates become years or per-patient shifts, ages over 89 '90+', ZIP codes "
    "their first three digits, and notes get [NAME], [DATE], [PHONE] … placeholders. "
    "Nothing is written unless the whole table went through."
)


@app.command(help=HELP)
@handle_errors
def deid(
    data: Annotated[Path, typer.Argument(help="CSV or Parquet table with identifiers.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to write the de-identified table.")
    ],
    policy: Annotated[
        Path | None,
        typer.Option(
            help="YAML policy: per-column keep|drop|pseudonymise|generalise, dates: year|shift."
        ),
    ] = None,
    report: Annotated[
        bool, typer.Option("--report", help="Also write a JSON report: OUT's name + .deid.json.")
    ] = False,
    raw_cells: RawCellsFlag = False,
    sep: SepOption = None,
    decimal: DecimalOption = None,
    encoding: EncodingOption = None,
    as_json: JsonFlag = False,
) -> None:
    from medserve.data import read_table
    from medserve.deid import KEY_PURPOSE, deidentify, load_policy
    from medserve.storage.keystore import KeyStore

    _check_output(data, output)
    frame = read_table(data, read_options(sep, decimal, encoding))
    rules = load_policy(policy, frame)
    key = KeyStore(settings()).purpose_key(KEY_PURPOSE)  # logs when it creates master.key
    # A bar only on a terminal: elsewhere Rich leaves an empty line, before an error too.
    with ProgressBar(enabled=not as_json and err.is_terminal) as progress:
        result = deidentify(frame, rules, key=key, progress=progress)
    warning = result.safe_harbor_warning()
    if warning is not None:
        err.print(warning, style="bold red", markup=False, soft_wrap=True)
    report_file = report_path(output) if report else None
    _write(result, output, report_file, raw_cells=raw_cells)
    if as_json:
        print_json(
            {
                "input": str(data),
                "output": str(output),
                "report_file": str(report_file) if report_file else None,
                "report": result.report.to_json(),
            }
        )
        return
    out.print(_columns_table(result))
    for outcome in result.columns:
        if outcome.kind == "text" and outcome.action == "generalise":
            placeholders = ", ".join(f"{k} {v}" for k, v in outcome.details.items())
            out.print(
                f"{outcome.column}: {outcome.changed} notes scrubbed; placeholders: "
                f"{placeholders or 'none'}",
                soft_wrap=True,
                markup=False,
            )
    for line in result.summary_lines()[len(result.columns) :]:
        out.print(line, soft_wrap=True, markup=False)
    out.print(f"wrote {output} ({len(result.frame)} rows, {result.frame.shape[1]} columns)")
    if report_file is not None:
        out.print(f"report: {report_file}", markup=False)


def report_path(output: Path) -> Path:
    """``out.csv`` → ``out.deid.json``, beside the table."""
    return output.with_name(f"{output.stem}.deid.json")


def _check_output(data: Path, output: Path) -> None:
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(
            f"{output}: cannot write '{output.suffix or '(none)'}' files; "
            "use .csv, .tsv or .parquet"
        )
    if not output.parent.is_dir():
        raise ConfigError(f"{output}: folder {output.parent} does not exist")
    if output.exists() and data.exists() and output.resolve() == data.resolve():
        raise ConfigError(f"{output}: is the input file; write the de-identified table elsewhere")


def _write(result: DeidResult, output: Path, report_file: Path | None, *, raw_cells: bool) -> None:
    """Both files appear whole or not at all: temp files beside them, then renames."""
    table_tmp = _temp_beside(output)
    report_tmp = _temp_beside(report_file) if report_file else None
    try:
        _write_table(result.frame, table_tmp, raw_cells=raw_cells)
        if report_file is not None and report_tmp is not None:
            report_tmp.write_text(json.dumps(result.report.to_json(), indent=2) + "\n")
        os.replace(table_tmp, output)
        if report_file is not None and report_tmp is not None:
            os.replace(report_tmp, report_file)
    finally:
        for leftover in (table_tmp, report_tmp):
            if leftover is not None:
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()


def _write_table(frame: pd.DataFrame, path: Path, *, raw_cells: bool) -> None:
    from medserve.data import write_table
    from medserve.errors import DataError

    try:
        write_table(frame, path, raw_cells=raw_cells)
    except (OSError, ValueError, TypeError) as error:  # pyarrow and the OS raise these
        raise DataError(f"cannot write the de-identified table: {error}") from None


def _temp_beside(path: Path) -> Path:
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)
    return Path(name)


def _columns_table(result: DeidResult) -> Table:
    standard = "HIPAA Safe Harbor" if result.report.safe_harbor else "NOT HIPAA Safe Harbor"
    flagged = {flag.column: flag for flag in result.report.review}
    table = Table(title=f"De-identification ({standard})", title_justify="left")
    for column in ("column", "detected", "found by", "action", "changed", "notes"):
        table.add_column(column, justify="right" if column == "changed" else "left")
    for outcome in result.columns:
        table.add_row(
            outcome.column,
            outcome.kind if outcome.kind != "none" else "–",
            outcome.detected_by or "",
            outcome.action,
            str(outcome.changed) if outcome.action != "keep" else "",
            _note(outcome, flagged.get(outcome.column)),
        )
    return table


def _note(outcome: ColumnOutcome, flag: ReviewFlag | None) -> str:
    from medserve.deid.report import REVIEW_REASONS

    if flag is not None and flag.reason != "scrubbed_text":
        return f"REVIEW: {REVIEW_REASONS[flag.reason]}"
    details = outcome.details
    if outcome.kind == "zip" and details.get("restricted_to_000"):
        return f"{details['restricted_to_000']} restricted areas → 000"
    if outcome.kind == "birth_date" and details.get("suppressed_aged_90_or_more"):
        return f"{details['suppressed_aged_90_or_more']} aged 90+ emptied"
    if outcome.kind == "age" and outcome.action == "generalise":
        return "over 89 → 90+"
    if outcome.kind == "text" and outcome.action == "generalise":
        return f"{sum(details.values())} placeholders; REVIEW: scrubbed by rules"
    if details.get("without_year_emptied"):
        return f"{details['without_year_emptied']} dates without a year emptied"
    return ""

"""`medserve train|schema`: from a table to a registered model (and a preview of how it
will be read)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from medserve.cli._common import (
    JsonFlag,
    ProgressBar,
    err,
    handle_errors,
    leaderboard_table,
    metrics_table,
    out,
    print_json,
    schema_table,
    settings,
)
from medserve.cli.options import (
    DecimalOption,
    EncodingOption,
    GroupOption,
    IntendedUseOption,
    ModelCardOption,
    SepOption,
    TextNotDeidentifiedOption,
    TextOption,
    read_options,
)
from medserve.config import Settings
from medserve.modeling.families import AUTO, auto_candidates, family_names

if TYPE_CHECKING:
    from medserve.flows import TrainOutcome

app = typer.Typer()

# The choices as the families registry has them (`medserve train --help`).
MODEL_HELP = (
    f"{'|'.join((AUTO, *family_names()))}, or several joined by commas "
    f"(logistic,lightgbm): {AUTO} cross-validates {', '.join(auto_candidates())}, a list "
    "those families, and keeps the best."
)


@app.command()
@handle_errors
def train(
    data: Annotated[Path, typer.Argument(help="CSV, Parquet or .npy table of patients.")],
    target: Annotated[str | None, typer.Option(help="Outcome column (.npy: the last).")] = None,
    positive: Annotated[
        str | None, typer.Option(help="Value of the target that is the event.")
    ] = None,
    positive_if: Annotated[
        str | None, typer.Option("--positive-if", help="Binarise a numeric target, e.g. '>0'.")
    ] = None,
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = AUTO,
    name: Annotated[str | None, typer.Option(help="Registry name (default: file name).")] = None,
    schema: Annotated[Path | None, typer.Option(help="YAML/JSON schema overrides.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed for splits and models.")] = 0,
    validation: Annotated[
        str,
        typer.Option(
            help="How performance is estimated: cv (out-of-fold predictions, final model on "
            "all rows), bootstrap (Harrell's optimism correction, final model on all rows) "
            "or holdout (a test split the model never sees)."
        ),
    ] = "cv",
    test_size: Annotated[
        float, typer.Option(help="Share of rows held out for testing (--validation holdout).")
    ] = 0.2,
    cv: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    time_limit: Annotated[
        float,
        typer.Option(
            "--time-limit",
            help="Seconds for the model search; candidates not started by then are skipped.",
        ),
    ] = 120.0,
    threshold_for: Annotated[
        str | None,
        typer.Option(
            "--threshold-for", help="youden (default), sensitivity=0.90 or specificity=0.95"
        ),
    ] = None,
    metric: Annotated[
        str,
        typer.Option(
            help="How auto ranks the families by cross-validation: auroc (near-ties broken "
            "by log-loss), brier or logloss."
        ),
    ] = "auroc",
    missing: Annotated[
        list[str] | None,
        typer.Option(help="COLUMN=VALUE[,VALUE] meaning 'not measured'; COLUMN= keeps zeros."),
    ] = None,
    ignore: Annotated[list[str] | None, typer.Option(help="Column to leave out.")] = None,
    group: GroupOption = None,
    intended_use: IntendedUseOption = None,
    model_card: ModelCardOption = None,
    deid: Annotated[
        bool,
        typer.Option(
            "--deid",
            help="De-identify the table first (HIPAA Safe Harbor, as `medserve deid`); the "
            "schema and report record it.",
        ),
    ] = False,
    deid_policy: Annotated[
        Path | None,
        typer.Option("--deid-policy", help="YAML de-identification policy (implies --deid)."),
    ] = None,
    text: TextOption = None,
    text_not_deidentified: TextNotDeidentifiedOption = False,
    sep: SepOption = None,
    decimal: DecimalOption = None,
    encoding: EncodingOption = None,
    engine: Annotated[
        str,
        typer.Option(
            help="Where the model search fits: local (this process) or ray (the folds and "
            "families as Ray tasks, on MEDSERVE_RAY_ADDRESS or a local Ray of every CPU); "
            "the same model either way."
        ),
    ] = "local",
    as_json: JsonFlag = False,
) -> None:
    """Train, validate internally, register a risk model and write its report."""
    from medserve.flows import TrainRequest, parse_missing, train_and_register
    from medserve.scale.training import training_engine

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
        metric=metric,
        validation=validation,
        time_limit=time_limit,
        missing=parse_missing(missing or []),
        ignore=ignore or [],
        groups=group or [],
        intended_use=intended_use,
        model_card=model_card,
        deid=deid,
        deid_policy=deid_policy,
        read=read_options(sep, decimal, encoding),
        text=text or None,
        text_not_deidentified=text_not_deidentified,
    )
    config = settings()
    with (
        training_engine(config, engine) as parallel,
        ProgressBar(enabled=not as_json) as progress,
    ):
        outcome = train_and_register(config, request, progress, parallel=parallel)
    if as_json:
        print_json(outcome.to_json())
        return
    show_training(outcome)


@app.command("schema")
@handle_errors
def show_schema(
    data: Annotated[Path, typer.Argument(help="Table to inspect.")],
    target: Annotated[str | None, typer.Option(help="Outcome column.")] = None,
    positive: str | None = None,
    positive_if: Annotated[str | None, typer.Option("--positive-if")] = None,
    missing: Annotated[
        list[str] | None,
        typer.Option(help="COLUMN=VALUE[,VALUE] meaning 'not measured' (as train)."),
    ] = None,
    ignore: Annotated[
        list[str] | None, typer.Option(help="Column to leave out (as train).")
    ] = None,
    deid: Annotated[
        bool,
        typer.Option(
            "--deid",
            help="Preview train --deid: de-identified under a throwaway key, so nothing is "
            "written to the home (types, roles and notices are train's; pseudonyms and "
            "shifted dates are not).",
        ),
    ] = False,
    deid_policy: Annotated[
        Path | None,
        typer.Option("--deid-policy", help="YAML de-identification policy (implies --deid)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write an editable YAML override file.")
    ] = None,
    text: TextOption = None,
    text_not_deidentified: TextNotDeidentifiedOption = False,
    sep: SepOption = None,
    decimal: DecimalOption = None,
    encoding: EncodingOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the schema train would infer for a table (and write it out for editing)."""
    import yaml

    from medserve.data.io import check_output
    from medserve.flows import TrainRequest, parse_missing
    from medserve.flows.prepare import preview_schema

    if output is not None:
        check_output(output, suffixes=(".yaml", ".yml", ".json"))
    schema = preview_schema(
        TrainRequest(
            data=data,
            target=target,
            positive=positive,
            positive_if=positive_if,
            missing=parse_missing(missing or []),
            ignore=ignore or [],
            deid=deid,
            deid_policy=deid_policy,
            read=read_options(sep, decimal, encoding),
            text=text or None,
            text_not_deidentified=text_not_deidentified,
        )
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
    for notice in schema.notices:  # warnings' text may hold brackets: not markup
        err.print(f"[yellow]notice:[/] {escape(notice)}", soft_wrap=True)
    out.print(schema_table(schema))
    out.print(f"outcome: {escape(schema.outcome.describe())}")
    if output is not None:
        out.print(f"wrote {output}: edit it and pass it to train with --schema")


def show_training(outcome: TrainOutcome) -> None:
    """The readable account of a training run: notices, schema, leaderboard, metrics."""
    for notice in outcome.notices:  # warnings' text may hold brackets: not markup
        err.print(f"[yellow]notice:[/] {escape(notice)}", soft_wrap=True)
    if outcome.schema.outcome is not None:  # for a clinical model, the most important line
        out.print(f"outcome: [bold]{escape(outcome.schema.outcome.describe())}[/] (the event)")
    out.print(schema_table(outcome.schema))
    out.print(leaderboard_table(outcome.leaderboard))
    version = outcome.version
    validation = outcome.validation
    title = (
        f"Metrics on {validation.measured_on}; final model fitted on {validation.final_model}"
        if validation is not None
        else f"Held-out test metrics ({outcome.n_test} rows; trained on {outcome.n_train})"
    )
    out.print(metrics_table(outcome.metrics, title))
    for row in validation.optimism if validation is not None else ():
        out.print(
            f"  {row.metric}: apparent {row.apparent:.3f}, optimism {row.optimism:+.3f}, "
            f"corrected {row.corrected:.3f}"
        )
    out.print(
        f"Registered [bold]{version.ref}[/] ({version.family}, stage {version.stage}, "
        f"threshold {version.threshold:.3f})\n"
        f"  artifact: {Settings().home / version.artifact_path}\n"
        f"  report:   {outcome.report_html or outcome.report_file}"
        + (f"\n  JSON:     {outcome.report_file}" if outcome.report_html else "")
    )

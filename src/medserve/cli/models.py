"""`medserve models …`: list, inspect and stage registered models."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from medserve.cli._common import (
    JsonFlag,
    err,
    fmt,
    handle_errors,
    metrics_table,
    out,
    print_json,
    schema_table,
    settings,
)

app = typer.Typer(help="List, inspect and stage registered models.", no_args_is_help=True)


def version_rows(versions: list[Any]) -> Table:
    table = Table(title="Registered models", title_justify="left")
    for column in ("model", "version", "stage", "family", "AUROC", "threshold", "created"):
        table.add_column(column)
    for v in versions:
        auroc = (v.metrics.get("auroc") or {}).get("estimate")
        table.add_row(
            v.name,
            str(v.version),
            v.stage,
            v.family,
            fmt(auroc),
            fmt(v.threshold),
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    return table


@app.command("list")
@handle_errors
def models_list(as_json: JsonFlag = False) -> None:
    """Every registered model version."""
    from medserve.storage import Registry

    with Registry(settings()) as registry:
        versions = registry.list()
    if as_json:
        print_json({"models": [v.to_dict() for v in versions]})
    elif not versions:
        out.print("no models yet: train one with `medserve train DATA --target COLUMN`")
    else:
        out.print(version_rows(versions))


@app.command("show")
@handle_errors
def models_show(
    model: Annotated[str, typer.Argument(help="NAME (production or latest) or NAME:VERSION")],
    as_json: JsonFlag = False,
) -> None:
    """One model version: metadata, schema (what may be shown of it), metrics, lineage."""
    from medserve.data import Schema
    from medserve.data.disclosure import public_schema
    from medserve.storage import Registry

    with Registry(settings()) as registry:
        version = registry.get(model)
    shown = public_schema(Schema.model_validate(version.schema))
    if as_json:
        print_json({**version.to_dict(), "schema": shown})
        return
    out.print(version_rows([version]))
    out.print(schema_table(Schema.model_validate(shown)))
    out.print(metrics_table(version.metrics, "Held-out test metrics"))
    lineage = version.lineage
    out.print(f"data sha256: {version.data_sha256}")
    out.print(f"libraries:   {json.dumps(lineage.get('libraries', {}))}")
    if version.report_path:
        out.print(f"report:      {(settings().home / version.report_path).resolve()}")


@app.command("promote")
@handle_errors
def models_promote(model: Annotated[str, typer.Argument(help="NAME:VERSION")]) -> None:
    """Move a version to production (the previous production version is archived)."""
    from medserve.storage import Registry

    with Registry(settings()) as registry:
        version = registry.promote(model)
    out.print(f"{version.ref} is now in production")


ForceFlag = Annotated[
    bool,
    typer.Option("--force", help="Also when the version is in production (then none is)."),
]


@app.command("archive")
@handle_errors
def models_archive(
    model: Annotated[str, typer.Argument(help="NAME:VERSION")], force: ForceFlag = False
) -> None:
    """Archive a version (the production one only with --force). Audited."""
    from medserve.security.local_audit import record_local_action
    from medserve.storage import Registry

    with Registry(settings()) as registry:
        version = registry.archive(model, force=force)
        record_local_action(
            settings(), registry.engine, "models archive", model=version.name,
            version=version.version,
        )  # fmt: skip
    out.print(f"{version.ref} archived")
    if force and version.stage == "archived":
        err.print(
            f"[yellow]warning:[/] '{version.name}' has no production version now: the "
            "server serves none of it until `medserve models promote` names one"
        )


@app.command("delete")
@handle_errors
def models_delete(
    model: Annotated[str, typer.Argument(help="NAME:VERSION")], force: ForceFlag = False
) -> None:
    """Delete a version: its record, encrypted artifact and reports (the production one
    only with --force). Audited."""
    from medserve.security.local_audit import record_local_action
    from medserve.storage import Registry

    with Registry(settings()) as registry:
        version = registry.delete(model, force=force)
        record_local_action(
            settings(), registry.engine, "models delete", model=version.name,
            version=version.version,
        )  # fmt: skip
    out.print(f"{version.ref} deleted")

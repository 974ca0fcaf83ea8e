"""`medserve models …`: list, inspect and stage registered models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from medserve.cli._common import (
    JsonFlag,
    err,
    fmt,
    handle_errors,
    metric_cell,
    metrics_table,
    out,
    print_json,
    schema_table,
    settings,
)

app = typer.Typer(help="List, inspect and stage registered models.", no_args_is_help=True)


def version_rows(versions: list[Any]) -> Table:
    from medserve.flows.common import outcome_of

    table = Table(title="Registered models", title_justify="left")
    columns = ("model", "version", "stage", "outcome", "family", "AUROC", "threshold", "created")
    for column in columns:
        table.add_column(column)
    for v in versions:
        auroc = (v.metrics.get("auroc") or {}).get("estimate")
        table.add_row(
            v.name,
            str(v.version),
            v.stage,
            outcome_of(v) or "–",
            v.family,
            fmt(auroc),
            fmt(v.threshold),
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    return table


def _summary(version: Any) -> dict[str, Any]:
    from medserve.flows.common import version_json

    auroc = (version.metrics.get("auroc") or {}).get("estimate")
    created = version.created_at.isoformat()
    return {**version_json(version), "auroc": auroc, "created_at": created}


@app.command("list")
@handle_errors
def models_list(as_json: JsonFlag = False) -> None:
    """Every registered model version."""
    from medserve.storage import Registry

    with Registry(settings()) as registry:
        versions = registry.list()
    if as_json:  # lean: `models show --json` has a version's schema, metrics and lineage
        print_json({"models": [_summary(v) for v in versions]})
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
    from medserve.flows.common import outcome_of, validated_on, version_json
    from medserve.storage import Registry

    with Registry(settings()) as registry:
        version = registry.get(model)
    shown = public_schema(Schema.model_validate(version.schema))
    if as_json:
        print_json({**version.to_dict(), **version_json(version), "schema": shown})
        return
    out.print(f"outcome: [bold]{escape(outcome_of(version) or 'not recorded')}[/]")
    out.print(version_rows([version]))
    out.print(schema_table(Schema.model_validate(shown)))
    out.print(metrics_table(version.metrics, f"Training metrics ({validated_on(version)})"))
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


@app.command("shadow")
@handle_errors
def models_shadow(
    model: Annotated[str, typer.Argument(help="NAME:VERSION to shadow; NAME with --stop")],
    stop: Annotated[
        bool, typer.Option("--stop", help="Stop shadowing NAME (its log rows are kept).")
    ] = False,
) -> None:
    """Score a candidate silently beside production: its risks are logged for the same
    patients and never returned; `medserve monitor NAME` compares the two. Audited."""
    from medserve.core.user import login_name
    from medserve.flows.monitor import set_shadow, stop_shadow
    from medserve.security.local_audit import record_local_action
    from medserve.storage import Registry

    home = settings()
    if stop:
        name = model.split(":", 1)[0]
        stopped = stop_shadow(home, name)
        if stopped is None:
            out.print(f"'{escape(name)}' had no shadow version")
            return
        with Registry(home) as registry:
            record_local_action(
                home, registry.engine, "models shadow stop", registry.get(f"{name}:{stopped}")
            )
        out.print(f"{escape(name)}:{stopped} is no longer scored in shadow")
        return
    version = set_shadow(home, model, login_name())
    with Registry(home) as registry:
        record_local_action(home, registry.engine, "models shadow", version)
    out.print(
        f"{version.ref} is now the shadow of '{escape(version.name)}': its risks are logged "
        "beside production's for the same requests and never returned to callers",
        soft_wrap=True,
    )
    out.print(f"see the comparison once outcomes arrive: medserve monitor {escape(version.name)}")


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
        record_local_action(settings(), registry.engine, "models archive", version)
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
        record_local_action(settings(), registry.engine, "models delete", version)
    out.print(f"{version.ref} deleted")


@app.command("compare")
@handle_errors
def models_compare(
    first: Annotated[str, typer.Argument(help="NAME:VERSION (A)")],
    second: Annotated[str, typer.Argument(help="NAME:VERSION (B)")],
    data: Annotated[
        Path | None,
        typer.Argument(help="Labelled rows to score both on (AUROC difference, paired CI)."),
    ] = None,
    seed: int = 0,
    as_json: JsonFlag = False,
) -> None:
    """Two versions side by side: their training metrics with CIs (as each was validated),
    data fingerprints, options; with DATA, both scored on the same rows and the AUROC
    difference with a paired CI."""
    from medserve.flows.compare import compare_versions

    compared = compare_versions(settings(), first, second, data, seed=seed)
    if as_json:
        print_json(compared.to_json())
        return
    table = Table(title=f"{compared.a.ref} vs {compared.b.ref}", title_justify="left")
    table.add_column("")
    for version in (compared.a, compared.b):
        table.add_column(version.ref)
    from medserve.flows.common import outcome_of, validated_on

    table.add_row("outcome", *(outcome_of(v) or "–" for v in (compared.a, compared.b)))
    table.add_row("validation", *(validated_on(v) for v in (compared.a, compared.b)))
    table.add_row("family", compared.a.family, compared.b.family)
    table.add_row("data sha256", compared.a.data_sha256[:12], compared.b.data_sha256[:12])
    for name in ("auroc", "brier", "calibration_slope"):
        table.add_row(
            name,
            *(metric_cell(v.metrics.get(name) or {}) for v in (compared.a, compared.b)),
        )
    out.print(table)
    if validated_on(compared.a) != validated_on(compared.b):
        err.print(
            "[yellow]notice:[/] the two versions' training metrics were measured differently "
            f"({validated_on(compared.a)} vs {validated_on(compared.b)}); compare them on the "
            "same rows: medserve models compare A B DATA"
        )
    same = "the same data" if compared.same_data else "different data"
    out.print(
        f"trained on {same}; options that differ: "
        f"{', '.join(compared.differing_options()) or 'none'}"
    )
    if compared.on_data is not None:
        on = compared.on_data
        low, high = on.difference.ci95
        out.print(
            f"on {on.source} ({on.n_rows} rows, {on.n_events} events): AUROC "
            f"{on.auroc_a:.3f} vs {on.auroc_b:.3f}, difference {on.difference.estimate:+.3f} "
            f"(95% CI {low:+.3f} to {high:+.3f}, paired bootstrap)"
        )


PASSPHRASE_ENV = "MEDSERVE_BUNDLE_PASSPHRASE"
PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help=f"File holding the bundle passphrase (else ${PASSPHRASE_ENV}, else a prompt).",
    ),
]


def _passphrase(passphrase_file: Path | None, *, confirm: bool) -> str:
    """From the file (one trailing newline dropped), else the environment, else a prompt
    that does not echo: never an argument, which other users could read in `ps`."""
    import os
    import stat

    from medserve.errors import ConfigError

    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text(encoding="utf-8")
            mode = stat.S_IMODE(passphrase_file.stat().st_mode)
        except OSError as error:
            raise ConfigError(
                f"cannot read the passphrase file {passphrase_file}: {error.strerror}"
            ) from error
        if mode & 0o077 and os.name == "posix":  # Windows reports no such bits
            err.print(
                f"[yellow]warning:[/] the passphrase file {escape(str(passphrase_file))} is "
                f"open to other users (mode {mode:04o}): chmod 600 "
                f"{escape(str(passphrase_file))}",
                soft_wrap=True,
            )
        return text.removesuffix("\n").removesuffix("\r")
    from_environment = os.environ.get(PASSPHRASE_ENV)
    if from_environment:
        return from_environment
    return str(
        typer.prompt("bundle passphrase", hide_input=True, confirmation_prompt=confirm, err=True)
    )


@app.command("export")
@handle_errors
def models_export(
    model: Annotated[str, typer.Argument(help="NAME:VERSION (or NAME: production or latest)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The bundle file to write.")],
    passphrase_file: PassphraseFile = None,
) -> None:
    """Write a version (metadata, model, report) to one encrypted, authenticated bundle
    file that another medserve imports with the passphrase. Audited."""
    from medserve.security.local_audit import record_local_action
    from medserve.storage import Registry
    from medserve.storage.bundle import export_bundle

    passphrase = _passphrase(passphrase_file, confirm=True)
    version = export_bundle(settings(), model, output, passphrase)
    with Registry(settings()) as registry:
        record_local_action(settings(), registry.engine, "models export", version)
    out.print(f"{version.ref} exported to {escape(str(output))}")


@app.command("import")
@handle_errors
def models_import(
    source: Annotated[
        str,
        typer.Argument(
            metavar="BUNDLE|NAME",
            help="A bundle written by `medserve models export`; with --onnx or "
            "--transformers, the name to register the imported model under.",
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", help="Register the bundle under this name (default: its own)."),
    ] = None,
    onnx: Annotated[
        Path | None,
        typer.Option("--onnx", help="Import this ONNX file, trained elsewhere (needs --schema)."),
    ] = None,
    transformers: Annotated[
        Path | None,
        typer.Option(
            "--transformers",
            help="Import this transformers folder (safetensors weights, config.json, "
            "tokenizer; needs --schema).",
        ),
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option(
            "--schema",
            help="The schema file (YAML or JSON) of an --onnx or --transformers import: its "
            "columns, target, output and threshold.",
        ),
    ] = None,
    passphrase_file: PassphraseFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Verify and decrypt a bundle and register its model as the next version of its name;
    or, with --onnx FILE or --transformers DIR and --schema FILE, register a model trained
    elsewhere as the next version of NAME. A candidate, unless the name is new. Nothing is
    registered when it fails. Audited."""
    if onnx is not None or transformers is not None or schema is not None:
        _import_trained_elsewhere(source, onnx, transformers, schema, name, as_json=as_json)
        return
    from medserve.security.local_audit import record_local_action
    from medserve.storage import ModelVersion, Registry
    from medserve.storage.bundle import import_bundle

    passphrase = _passphrase(passphrase_file, confirm=False)
    home = settings()

    def audit(registry: Registry, version: ModelVersion) -> None:
        record_local_action(home, registry.engine, "models import", version)

    # Audited before it counts: a version whose record cannot be written is removed again.
    version = import_bundle(home, Path(source), passphrase, name=name, audit=audit)
    if as_json:
        print_json(_summary(version))
        return
    out.print(f"imported as {version.ref} ({version.stage})")


def _import_trained_elsewhere(
    name: str,
    onnx: Path | None,
    transformers: Path | None,
    schema: Path | None,
    bundle_name: str | None,
    *,
    as_json: bool,
) -> None:
    """`models import NAME --onnx FILE|--transformers DIR --schema FILE`."""
    from medserve.errors import ConfigError, option
    from medserve.flows.imports import import_model

    if onnx is not None and transformers is not None:
        raise ConfigError(
            f"give either {option('onnx')} FILE or {option('transformers')} DIR, not both"
        )
    if onnx is None and transformers is None:
        raise ConfigError(
            f"{option('schema_file')} goes with {option('onnx')} FILE or {option('transformers')} "
            "DIR: name the model to import"
        )
    if schema is None:
        raise ConfigError(
            f"an imported model needs its schema file: add {option('schema_file')} FILE (its "
            "columns, target, output and threshold)"
        )
    if bundle_name is not None:
        raise ConfigError(
            f"{option('name')} is for bundles: with {option('onnx')} or "
            f"{option('transformers')} the model's name is the first argument"
        )
    path = onnx if onnx is not None else transformers
    outcome = import_model(
        settings(), name, onnx=onnx, transformers=transformers, schema_file=schema
    )
    version = outcome.version
    if as_json:
        print_json({**_summary(version), "files": outcome.files, "notices": outcome.notices})
        return
    for notice in outcome.notices:
        err.print(f"[yellow]notice:[/] {escape(notice)}", soft_wrap=True)
    (first, *others) = outcome.files
    digests = (
        f"sha256 {first['sha256']}"
        if not others
        else f"{len(outcome.files)} files, sha256 in `medserve models show {version.ref} --json`"
    )
    out.print(
        f"registered {version.ref} ({version.family}, stage {version.stage}) from "
        f"{escape(str(path))}; {digests}",
        soft_wrap=True,
    )

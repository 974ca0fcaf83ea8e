"""`medserve keys …`: create, list and revoke API keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from medserve.cli._common import JsonFlag, err, handle_errors, out, print_json, settings
from medserve.security.api_keys import ROLES

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@app.command("create")
@handle_errors
def keys_create(
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}.")],
    name: Annotated[str | None, typer.Option("--name", help="A label, e.g. who uses it.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a key and print its token: the only time it is shown."""
    from medserve.security.api_keys import ApiKeyStore
    from medserve.storage import Registry

    with Registry(settings()) as registry:
        key, token = ApiKeyStore(registry.engine).create(role, name)
    if as_json:
        print_json({"id": key.id, "role": key.role, "name": key.name, "key": token})
        return
    label = f", name {key.name!r}" if key.name else ""
    err.print(f"created key {key.id} (role {key.role}{label})", soft_wrap=True, markup=False)
    out.print(token, soft_wrap=True, markup=False)
    err.print("store it now: it is shown only once and cannot be recovered")


@app.command("list")
@handle_errors
def keys_list(as_json: JsonFlag = False) -> None:
    """Every key with its role and state; never the tokens."""
    from medserve.security.api_keys import ApiKeyStore
    from medserve.storage import Registry

    with Registry(settings()) as registry:
        keys = ApiKeyStore(registry.engine).list()
    if as_json:
        print_json({"keys": [key.to_dict() for key in keys]})
        return
    if not keys:
        out.print("no API keys yet: create one with `medserve keys create --role ROLE`")
        return
    table = Table(title="API keys", title_justify="left")
    for column in ("id", "role", "name", "created", "revoked"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key.id,
            key.role,
            key.name or "",
            key.created_at.strftime("%Y-%m-%d %H:%M"),
            key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else "",
        )
    out.print(table)


@app.command("revoke")
@handle_errors
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id `keys list` shows.")],
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    from medserve.security.api_keys import ApiKeyStore
    from medserve.storage import Registry

    with Registry(settings()) as registry:
        key = ApiKeyStore(registry.engine).revoke(key_id)
    out.print(f"revoked key {key.id} (role {key.role})", markup=False)


@app.command("rotate-master")
@handle_errors
def keys_rotate_master(
    retire_old: Annotated[
        bool,
        typer.Option(help="Drop the old master key once every artifact is re-wrapped."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Re-wrap every artifact's data key under a new master key; serving continues."""
    from dataclasses import asdict

    from medserve.storage.artifacts import rotate_master_key

    result = rotate_master_key(settings(), retire_old=retire_old)
    if as_json:
        print_json(asdict(result))
        return
    out.print(
        f"master key {result.old_key_id} → {result.new_key_id}: re-wrapped "
        f"{result.rewrapped} artifacts and {result.purpose_keys_rewrapped} purpose keys",
        markup=False,
    )
    if result.retired_key_ids:
        out.print(f"dropped retired keys: {', '.join(result.retired_key_ids)}", markup=False)
    for path in result.unreadable:
        err.print(f"could not re-wrap {path}", markup=False)
    if result.unreadable:
        raise typer.Exit(4)

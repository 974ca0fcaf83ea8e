"""`medserve db upgrade`: the registry's schema migrated once per deployment, before the
replicas start (they never migrate)."""

from __future__ import annotations

import typer

from medserve.cli._common import JsonFlag, err, handle_errors, print_json, settings

app = typer.Typer(help="The registry's database.", no_args_is_help=True)


@app.command("upgrade")
@handle_errors
def db_upgrade(as_json: JsonFlag = False) -> None:
    """Bring the registry's schema to the newest migration (a no-op when it is there)."""
    from medserve.storage.upgrade import upgrade_database

    config = settings()
    outcome = upgrade_database(config.resolved_database_url)
    if as_json:
        print_json(outcome)
        return
    what = "migrated" if outcome["migrated"] else "already at"
    err.print(f"{what} revision {outcome['revision']}: {outcome['database']}", markup=False)

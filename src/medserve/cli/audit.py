"""`medserve audit …`: verify, checkpoint and export the audit trail.

A checkpoint (`medserve audit checkpoint -o FILE`) is the chain's newest seq and hash at
a moment, MACed with the audit key, written 0600 to a file kept away from the database
(another host, write-once storage). `medserve audit verify --checkpoint FILE` then also
finds what the database alone cannot show: the tail cut with an old head put back, or the
audit tables restored from a backup older than the checkpoint. Take one on a schedule
(cron, a systemd timer), e.g. `medserve audit checkpoint -o /anchors/audit-$(date +%F).json`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from medserve.cli._common import (
    JsonFlag,
    err,
    exit_code,
    handle_errors,
    out,
    print_json,
    settings,
)
from medserve.config import Settings
from medserve.core.files import create_private
from medserve.errors import ConfigError, IntegrityError

app = typer.Typer(help="Verify, checkpoint and export the audit trail.", no_args_is_help=True)
AUDIT_PURPOSE = "audit"  # the purpose key the service MACs its audit records with


def audit_key(settings: Settings, *, create: bool = True) -> bytes:
    """The audit trail's HMAC key: the key store's "audit" purpose key.

    ``create=False`` (verifying) never makes a key, or any file: a home without one
    is a ConfigError saying so.
    """
    from medserve.storage.keystore import KeyStore

    keystore = KeyStore(settings, create=create)
    if not create and not keystore.has_purpose_key(AUDIT_PURPOSE):
        raise ConfigError(
            f"cannot load the audit key: {keystore.purpose_file} does not exist or holds "
            "none, so there is no audit trail here to vouch for; point MEDSERVE_HOME at the "
            "home of the service that wrote the trail, or restore its master.key and "
            "keys.json from backup"
        )
    return keystore.purpose_key(AUDIT_PURPOSE)


@app.command("verify")
@handle_errors
def audit_verify(
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="A file from `medserve audit checkpoint`: also check that the trail still "
            "holds the record it vouches for (finds truncation and rollback).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check every record's hash, chain link and MAC; exit non-zero at the first break."""
    from medserve.security.audit import AuditLog
    from medserve.storage import Registry

    current = settings()
    key = audit_key(current, create=False)
    anchor = read_checkpoint(checkpoint) if checkpoint is not None else None
    with Registry(current) as registry:
        log = AuditLog(registry.engine, key)
        result = log.verify() if anchor is None else log.verify_checkpoint(anchor)
    if as_json:
        print_json(result.to_dict())
    elif result.ok:
        against = f" (checkpoint seq {anchor.seq} found)" if anchor is not None else ""
        out.print(f"OK: {result.checked} records verified{against}", markup=False)
    else:
        where = f" at record {result.first_broken_seq}" if result.first_broken_seq else ""
        out.print(f"BROKEN{where}: {result.reason}", soft_wrap=True, markup=False)
    if not result.ok:
        raise typer.Exit(exit_code(IntegrityError))


@app.command("checkpoint")
@handle_errors
def audit_checkpoint(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Write the checkpoint here (mode 0600).")
    ],
) -> None:
    """Verify the trail, then write its newest seq and hash, MACed, to keep elsewhere."""
    from medserve.security.audit import AuditLog
    from medserve.storage import Registry

    current = settings()
    key = audit_key(current, create=False)
    with Registry(current) as registry:
        anchor = AuditLog(registry.engine, key).checkpoint()
    try:
        with create_private(output).open("w", encoding="utf-8") as stream:
            stream.write(json.dumps(anchor.to_dict(), indent=2) + "\n")
    except OSError as error:
        raise ConfigError(f"cannot write {output}: {error.strerror}") from error
    err.print(
        f"checkpoint of record {anchor.seq} ({anchor.at}) written to {output}",
        soft_wrap=True,
        markup=False,
    )


@app.command("request-id")
@handle_errors
def audit_request_id(
    client_request_id: Annotated[str, typer.Argument(help="The X-Request-ID a client sent.")],
) -> None:
    """Print what the trail holds for a client's X-Request-ID (its keyed hash), to find it."""
    from medserve.security.audit import AuditLog
    from medserve.storage import Registry

    current = settings()
    key = audit_key(current, create=False)
    with Registry(current) as registry:
        out.print(AuditLog(registry.engine, key).request_id_for(client_request_id), markup=False)


def read_checkpoint(path: Path) -> Any:
    from medserve.security.audit import Checkpoint

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read the checkpoint {path}: {error.strerror}") from error
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"the checkpoint {path} is not JSON") from None
    return Checkpoint.from_dict(data)


@app.command("export")
@handle_errors
def audit_export(
    since: Annotated[
        str | None,
        typer.Option("--since", help="ISO 8601 start time; UTC when it has no zone."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write the audit records as JSON lines, oldest first."""
    from medserve.security.audit import export_records
    from medserve.storage import Registry

    start = parse_since(since) if since is not None else None
    with Registry(settings()) as registry:
        if output is None:
            write_lines(export_records(registry.engine, start), sys.stdout)
            return
        try:
            with create_private(output).open("w", encoding="utf-8") as stream:
                count = write_lines(export_records(registry.engine, start), stream)
        except OSError as error:
            raise ConfigError(f"cannot write {output}: {error.strerror}") from error
    err.print(f"exported {count} audit records to {output}", soft_wrap=True, markup=False)


def parse_since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is not an ISO 8601 time (e.g. 2025-11-29 or 2025-11-29T08:00:00Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def write_lines(records: Iterable[dict[str, Any]], stream: TextIO) -> int:
    count = 0
    for record in records:
        stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count

"""`medserve serve`: the HTTP service under uvicorn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medserve.cli._common import err, handle_errors, settings
from medserve.config import Settings

app = typer.Typer()


def start_server(
    config: Settings,
    host: str,
    port: int,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
    log_level: str = "info",
) -> None:
    """Serve under uvicorn, telling the operator on stderr what is served."""
    from medserve.serve.uvicorn import start_server as serve_uvicorn

    if (ssl_certfile is None) != (ssl_keyfile is None):
        from medserve.errors import ConfigError

        raise ConfigError("give both --ssl-certfile and --ssl-keyfile, or neither")
    if config.cds_sandbox:
        from medserve.security.ehr_jwt import loud_sandbox_warning

        _notify("warning", loud_sandbox_warning())
    serve_uvicorn(config, host, port, _notify, ssl_certfile, ssl_keyfile, log_level)


def _notify(level: str, text: str) -> None:
    colour = {"warning": "yellow", "error": "red"}.get(level)
    err.print(f"[{colour}]{level}:[/] {text}" if colour else text, markup=colour is not None)


@app.command()
@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve every production model over HTTP (keys, validation, audit, metrics)."""
    start_server(settings(), host, port, ssl_certfile, ssl_keyfile, log_level)


def curl_example(url: str, key: str, record: dict) -> str:
    body = json.dumps({"records": [record], "explain": True})
    return (
        f"curl -s -X POST {url} -H 'Authorization: Bearer {key}' "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )

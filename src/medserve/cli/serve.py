"""`medserve serve`: the HTTP service under uvicorn."""

from __future__ import annotations

import json
import logging.config
from pathlib import Path
from typing import Annotated

import typer

from medserve.cli._common import err, handle_errors, settings
from medserve.config import Settings

app = typer.Typer()
GRACEFUL_SHUTDOWN_S = 30


def start_server(
    config: Settings,
    host: str,
    port: int,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
    log_level: str = "info",
) -> None:
    """Open everything (a broken registry stops here), tell the operator, then serve."""
    import uvicorn

    from medserve.registry.keystore import KeyStore
    from medserve.service.app import create_app
    from medserve.service.keys import ApiKeyStore
    from medserve.service.observability import logging_config

    if (ssl_certfile is None) != (ssl_keyfile is None):
        from medserve.errors import ConfigError

        raise ConfigError("give both --ssl-certfile and --ssl-keyfile, or neither")
    logging.config.dictConfig(logging_config(log_level.upper()))
    keystore = KeyStore(config)
    if keystore.created_key_file is not None:
        err.print(
            f"[yellow]warning:[/] created master key {keystore.created_key_file}: back it up; "
            "without it the models cannot be decrypted"
        )
    app_ = create_app(config)
    served = [v.ref for v in app_.state.catalog.served_versions()]
    err.print(f"serving {', '.join(served) if served else 'no models yet'}")
    for ref, why in app_.state.catalog.failures.items():
        err.print(f"[red]not serving {ref}:[/] {why}")
    if ApiKeyStore(app_.state.registry.engine).count_active() == 0:
        err.print(
            "no API keys yet: create one with `medserve keys create --role predictor` "
            "(every route but /healthz and /readyz needs one)"
        )
    scheme = "https" if ssl_certfile else "http"
    err.print(f"listening on {scheme}://{host}:{port} (OpenAPI: /openapi.json, with a key)")
    uvicorn.run(
        app_,
        host=host,
        port=port,
        log_config=logging_config(log_level.upper()),
        access_log=False,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        loop="uvloop",
        http="httptools",
    )


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

"""`medserve serve`: the HTTP service under uvicorn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medserve.cli._common import err, handle_errors, settings
from medserve.config import Settings

app = typer.Typer()


ENGINES = ("uvicorn", "ray")


def start_server(
    config: Settings,
    host: str,
    port: int,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
    log_level: str = "info",
    *,
    engine: str = "uvicorn",
    workers: int = 1,
    replicas: int = 1,
    max_replicas: int | None = None,
) -> None:
    """Serve under uvicorn (``workers`` processes) or on Ray Serve (``replicas`` up to
    ``max_replicas``), telling the operator on stderr what is served."""
    from medserve.errors import ConfigError

    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: give one of {', '.join(ENGINES)}")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError("give both --ssl-certfile and --ssl-keyfile, or neither")
    if engine == "ray" and workers != 1:
        raise ConfigError("--workers is for --engine uvicorn; on Ray give --replicas")
    if engine == "uvicorn" and (replicas != 1 or max_replicas is not None):
        raise ConfigError("--replicas and --max-replicas need --engine ray")
    if config.cds_sandbox:
        from medserve.security.ehr_jwt import loud_sandbox_warning

        _notify("warning", loud_sandbox_warning())
    if engine == "ray":
        if ssl_certfile is not None:
            raise ConfigError(
                "--engine ray serves plain HTTP behind Ray Serve's proxy: terminate TLS in "
                "front of it (an ingress or load balancer) and drop --ssl-certfile/--ssl-keyfile"
            )
        from medserve.serve.ray_serve import Scaling
        from medserve.serve.ray_serve import start_server as serve_ray

        scaling = Scaling(replicas, max_replicas if max_replicas is not None else replicas)
        serve_ray(config, host, port, scaling, _notify)
        return
    from medserve.serve.uvicorn import start_server as serve_uvicorn

    serve_uvicorn(
        config, host, port, _notify, ssl_certfile, ssl_keyfile, log_level, workers=workers
    )


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
    engine: Annotated[
        str, typer.Option(help="uvicorn (one machine) or ray (Ray Serve; medserve[ray]).")
    ] = "uvicorn",
    workers: Annotated[
        int, typer.Option(min=1, help="uvicorn worker processes (above 1: shared limits).")
    ] = 1,
    replicas: Annotated[
        int, typer.Option(min=1, help="Ray Serve replicas at first and at least.")
    ] = 1,
    max_replicas: Annotated[
        int | None, typer.Option(min=1, help="Ray Serve's autoscaling ceiling (default: fixed).")
    ] = None,
) -> None:
    """Serve every production model over HTTP (keys, validation, audit, metrics)."""
    start_server(
        settings(),
        host,
        port,
        ssl_certfile,
        ssl_keyfile,
        log_level,
        engine=engine,
        workers=workers,
        replicas=replicas,
        max_replicas=max_replicas,
    )


def curl_example(url: str, key: str, record: dict) -> str:
    body = json.dumps({"records": [record], "explain": True})
    return (
        f"curl -s -X POST {url} -H 'Authorization: Bearer {key}' "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )

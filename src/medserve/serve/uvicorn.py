"""Serving the HTTP app under uvicorn: the only module that starts a uvicorn server."""

from __future__ import annotations

import logging.config
from collections.abc import Callable
from pathlib import Path

from medserve.config import Settings
from medserve.errors import ConfigError
from medserve.serve.logs import logging_config

GRACEFUL_SHUTDOWN_S = 30
# Tells the operator what is being served: (level, text), level one of info, warning, error.
Notify = Callable[[str, str], None]


def start_server(
    config: Settings,
    host: str,
    port: int,
    notify: Notify,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
    log_level: str = "info",
    *,
    workers: int = 1,
) -> None:
    """Open everything (a broken registry stops here), tell the operator, then serve: in
    this process, or in ``workers`` processes that each build the app
    (``serve.factory``) and share the registry, the master key file and, in Redis, the
    request limits (required: else each worker would admit a key's whole limit)."""
    import uvicorn

    from medserve.http.app import create_app
    from medserve.security.api_keys import ApiKeyStore
    from medserve.storage.keystore import KeyStore

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError("give both a TLS certificate file and a TLS key file, or neither")
    if workers > 1 and config.shared_state_url is None:
        raise ConfigError(
            f"{workers} workers would each count a key's requests on its own: set "
            "MEDSERVE_SHARED_STATE_URL=redis://host:6379/0 so that they count together"
        )
    logging.config.dictConfig(logging_config(log_level.upper()))
    keystore = KeyStore(config)
    if keystore.created_key_file is not None:
        notify(
            "warning",
            f"created master key {keystore.created_key_file}: back it up; "
            "without it the models cannot be decrypted",
        )
    app_ = create_app(config)
    served = [v.ref for v in app_.state.catalog.served_versions()]
    notify("info", f"serving {', '.join(served) if served else 'no models yet'}")
    for ref, why in app_.state.catalog.failures.items():
        notify("error", f"not serving {ref}: {why}")
    if ApiKeyStore(app_.state.registry.engine).count_active() == 0:
        notify(
            "info",
            "no API keys yet: create one with `medserve keys create --role predictor` "
            "(every route but /healthz and /readyz needs one)",
        )
    scheme = "https" if ssl_certfile else "http"
    notify("info", f"listening on {scheme}://{host}:{port} (OpenAPI: /openapi.json, with a key)")
    if workers > 1:
        # This process's app checked the registry and the models; the workers build their own.
        app_.state.registry.close()
        notify("info", f"{workers} worker processes")
    uvicorn.run(
        "medserve.serve.factory:worker_app" if workers > 1 else app_,
        factory=workers > 1,
        workers=workers if workers > 1 else None,
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

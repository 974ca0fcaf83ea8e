"""Serving the HTTP app on Ray Serve (``medserve serve --engine ray``): the same FastAPI app,
under ``serve.ingress``, in N replicas behind Ray Serve's proxy, scaled between a floor and
a ceiling by Ray Serve's autoscaler.

What the replicas share, and so what a deployment must give them:

- the registry: PostgreSQL (SQLite is refused: it is one machine's file), migrated once
  beforehand by ``medserve db upgrade`` (a replica never migrates);
- the request limits: Redis (``MEDSERVE_SHARED_STATE_URL``), counted once for all;
- the artifacts and the master key: ``MEDSERVE_HOME`` on storage every replica reads,
  the key in its key file there or in ``MEDSERVE_MASTER_KEY``.

Revoked keys, the EHR tokens' ``jti`` and the audit chain live in the database: a revoked
key is refused by every replica within ``key_cache_s``; a replayed token by all at once;
the audit trail stays one chain (its writers take the database's lock in turn).

Secrets never travel through Ray: a replica is told the driver's settings without them
(``replica_settings``) and reads them from its own environment (on a local Ray, the
command's; on a cluster, the pod's, from a Kubernetes Secret): the master key, the FHIR
token, and a database or Redis URL that holds a password (one without, whose password
comes from elsewhere, PGPASSWORD or a client certificate, is told).

Each replica's own dynamic batching (scoring/batching.py) coalesces concurrent requests
for heavy models, as in one process.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from typing import Any

from medserve.config import Settings
from medserve.errors import ConfigError, option
from medserve.scale.cluster import cluster_cpus, ray_session, settings_told
from medserve.scale.cluster import worker_settings as replica_settings
from medserve.serve.uvicorn import GRACEFUL_SHUTDOWN_S, Notify

APP_NAME = "medserve"
DEPLOYMENT_NAME = "medserve-http"
# Requests one replica takes at once before the proxy queues (the app is asynchronous:
# scoring runs on threads, so a replica serves many requests concurrently).
MAX_ONGOING_REQUESTS = 64
# The autoscaler adds a replica when its replicas average more ongoing requests than this.
TARGET_ONGOING_REQUESTS = 16


@dataclass(frozen=True)
class Scaling:
    """How many replicas: ``replicas`` at first and at least, up to ``max_replicas``."""

    replicas: int
    max_replicas: int
    # CPUs Ray reserves for each replica (a share of one lets a small machine hold more).
    replica_cpus: float = 1.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigError(f"{option('replicas')} must be at least 1")
        if self.max_replicas < self.replicas:
            raise ConfigError(
                f"{option('max_replicas')} ({self.max_replicas}) is below "
                f"{option('replicas')} ({self.replicas}); "
                "give a ceiling at or above the floor"
            )

    def options(self) -> dict[str, Any]:
        """Ray Serve's deployment options: a fixed count, or an autoscaling configuration."""
        if self.max_replicas == self.replicas:
            return {"num_replicas": self.replicas}
        return {
            "autoscaling_config": {
                "min_replicas": self.replicas,
                "initial_replicas": self.replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": TARGET_ONGOING_REQUESTS,
                "upscale_delay_s": 10,
                "downscale_delay_s": 120,
            }
        }


def check_shared(settings: Settings) -> None:
    """Refuse, before Ray starts, a configuration that replicas cannot share: a SQLite
    registry, no shared request limits, or a database not migrated to the newest schema."""
    from medserve.storage.database import at_head, describe_url, open_engine

    url = settings.database_url
    if not url or url.startswith("sqlite"):
        raise ConfigError(
            f"the ray engine ({option('engine')} ray) needs a PostgreSQL registry that every "
            "replica shares: set "
            "MEDSERVE_DATABASE_URL=postgresql+psycopg://user@host/db (SQLite is one machine's "
            "file), then run `medserve db upgrade` once"
        )
    if settings.shared_state_url is None:
        raise ConfigError(
            f"the ray engine ({option('engine')} ray) needs the request limits shared by "
            "every replica: set "
            "MEDSERVE_SHARED_STATE_URL=redis://host:6379/0"
        )
    engine = open_engine(url)
    try:
        migrated = at_head(engine)
    finally:
        engine.dispose()
    if not migrated:
        raise ConfigError(
            f"the registry at {describe_url(url)} is not at the newest schema: run "
            "`medserve db upgrade` once before starting replicas (they never migrate)"
        )


def build_replica_app(told: dict[str, Any]) -> Any:
    """On a replica: the app for the driver's settings, its secrets from this process's
    environment. A replica that finds no PostgreSQL URL there refuses to start rather
    than open a registry of its own."""
    from medserve.http.app import create_app

    settings = settings_told(told)
    if not settings.database_url or settings.database_url.startswith("sqlite"):
        raise ConfigError(
            "this Ray replica has no MEDSERVE_DATABASE_URL (PostgreSQL) in its environment: "
            "give it the same as the driver's (on Kubernetes, from a Secret)"
        )
    return create_app(settings)


class Replica:
    """One replica: Ray Serve builds its app when the replica starts (late-bound, so no
    app, open database or model crosses Ray), then runs the app's lifespan."""

    def __init__(self, told: dict[str, Any]) -> None:
        self._told = told

    def __serve_build_asgi_app__(self) -> Any:
        return build_replica_app(self._told)


def deployment(settings: Settings, scaling: Scaling, cpus: int) -> Any:
    """The Ray Serve application: the app built on each replica from ``settings``."""
    from ray import serve

    return serve.deployment(
        serve.ingress()(Replica),
        name=DEPLOYMENT_NAME,
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
        graceful_shutdown_timeout_s=GRACEFUL_SHUTDOWN_S,
        ray_actor_options={"num_cpus": min(scaling.replica_cpus, cpus / scaling.max_replicas)},
        **scaling.options(),
    ).bind(replica_settings(settings))


def app_builder(args: dict[str, str]) -> Any:
    """The application for ``serve run`` and KubeRay's ``serveConfigV2`` (import_path
    ``medserve.serve.ray_serve:app_builder``; args ``replicas``, ``max_replicas``): the
    settings from the environment, checked as ``medserve serve --engine ray`` checks them."""
    import ray

    settings = Settings()
    check_shared(settings)
    try:
        replicas = int(args.get("replicas", 1))
        scaling = Scaling(replicas, int(args.get("max_replicas", replicas)))
    except ValueError as error:
        raise ConfigError(f"replicas and max_replicas must be whole numbers ({error})") from None
    return deployment(settings, scaling, cluster_cpus(ray))


def run(settings: Settings, host: str, port: int, scaling: Scaling) -> Any:
    """Deploy the app on the current Ray (``ray_session``) and wait for its replicas; the
    Serve handle. Ray Serve's proxy listens on ``host:port``."""
    import ray
    from ray import serve

    serve.start(http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"})
    return serve.run(
        deployment(settings, scaling, cluster_cpus(ray)),
        name=APP_NAME,
        route_prefix="/",
    )


def start_server(
    settings: Settings, host: str, port: int, scaling: Scaling, notify: Notify
) -> None:
    """Check what replicas must share, start or join Ray, deploy, tell the operator, and
    serve until interrupted (Ctrl-C or SIGTERM), then stop the replicas gracefully."""
    from medserve.storage.keystore import KeyStore

    check_shared(settings)
    # The master key exists before any replica starts: each reads it, none creates one.
    keystore = KeyStore(settings)
    if keystore.created_key_file is not None:
        notify(
            "warning",
            f"created master key {keystore.created_key_file}: back it up; "
            "without it the models cannot be decrypted",
        )
    stopped = threading.Event()
    with ray_session(settings):
        from ray import serve

        # Before the deployment: a stop asked for while replicas start still stops cleanly.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopped.set())
        run(settings, host, port, scaling)
        described = (
            f"{scaling.replicas} replica{'s' if scaling.replicas > 1 else ''}"
            if scaling.replicas == scaling.max_replicas
            else f"{scaling.replicas} to {scaling.max_replicas} replicas (autoscaling)"
        )
        notify("info", f"listening on http://{host}:{port} on Ray Serve, {described}")
        stopped.wait()
        notify("info", "stopping: replicas finish their requests, then write their audit")
        serve.shutdown()

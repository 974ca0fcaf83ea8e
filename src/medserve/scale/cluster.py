"""Joining the Ray cluster a command runs on: ``settings.ray_address`` (``auto``, or
ray://head:10001) when set, else a local Ray started for the command and stopped after it.

Ray's own token authentication (on by default since Ray 2.5x: the token in
~/.ray/auth_token, or RAY_AUTH_TOKEN) protects the cluster; medserve's keys, roles and
audit protect the application's traffic and hold on every worker and replica alike.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from medserve.config import Settings
from medserve.errors import ConfigError, option

RAY_EXTRA = "medserve[ray]"
# Settings never told to a Ray worker (``worker_settings``).
SECRET_SETTINGS = frozenset({"master_key", "fhir_server_token"})
# URLs told to a worker only when they hold no password.
URL_SETTINGS = ("database_url", "shared_state_url")
# Where a command's work runs: in this process, or on Ray.
ENGINES = ("local", "ray")


def check_engine(engine: str) -> str:
    """``engine`` if it is one of ``ENGINES``, else a ConfigError naming them."""
    if engine not in ENGINES:
        raise ConfigError(
            f"unknown engine '{engine}' ({option('engine')}); choose {' or '.join(ENGINES)}"
        )
    return engine


def import_ray() -> Any:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError as error:
        raise ConfigError(
            f"the ray engine ({option('engine')} ray) needs Ray: "
            f"pip install '{RAY_EXTRA}' ({error})"
        ) from None
    return ray


@contextmanager
def ray_session(settings: Settings) -> Iterator[Any]:
    """Ray, initialised for the duration of the block: the cluster at
    ``settings.ray_address``, or a local one of ``settings.ray_num_cpus`` CPUs (every CPU
    when unset). A Ray already initialised in this process (a test's, a notebook's) is
    used as it is and left running."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
    }
    address = settings.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        options["address"] = address
    else:
        options["num_cpus"] = settings.ray_num_cpus or os.cpu_count() or 1
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = address or "a local Ray"
        raise ConfigError(
            f"Ray could not start or be reached at {where}: {str(error).splitlines()[0]}; "
            "check MEDSERVE_RAY_ADDRESS (unset starts a local Ray)"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray: Any) -> int:
    """CPUs the cluster offers (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def worker_settings(settings: Settings) -> dict[str, Any]:
    """What a Ray worker (a replica, a scoring actor) is told of the driver's settings:
    everything set but the secrets (a URL with a password is one), the home made absolute
    (a worker's working directory may differ). Nothing told crosses Ray that a cluster's
    object store or control store should not hold: a worker reads the master key, the
    FHIR token and any URL with a password from its own environment."""
    told = settings.model_dump(
        mode="json", exclude={*SECRET_SETTINGS, *URL_SETTINGS}, exclude_defaults=True
    )
    told["home"] = str(settings.home.resolve())
    for name in URL_SETTINGS:
        value = getattr(settings, name)
        url = value.get_secret_value() if isinstance(value, SecretStr) else value
        if url and urlsplit(url).password is None and "password" not in urlsplit(url).query:
            told[name] = url
    return told


def settings_told(told: dict[str, Any]) -> Settings:
    """On a worker: the settings ``worker_settings`` told it, the rest (the secrets) from
    this process's environment."""
    return Settings(**told)

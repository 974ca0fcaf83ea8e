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

from medserve.config import Settings
from medserve.errors import ConfigError, option

RAY_EXTRA = "medserve[ray]"
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

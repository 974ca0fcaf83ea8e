"""`medserve train --engine ray`: the search's fits (every candidate's folds, the families
side by side: ``modeling.search``) as Ray tasks of one CPU each, on the cluster
``cluster.ray_session`` joins. The model chosen, the leaderboard and the report are those of
the local engine; only where the fits run changes.

The table is put in Ray's object store once per search; each task reads it from there, fits
one fold with BLAS on one thread (as ``train_model`` does), and sends back the fold's
out-of-fold risks and the warnings it raised, which are raised again here so that they
become the training report's notices as they do locally. The families are the ones
installed on the workers (a family registered at run time in this process is not)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from threadpoolctl import threadpool_limits

from medserve.config import Settings
from medserve.modeling.parallel import Parallel
from medserve.scale.cluster import ENGINES, check_engine, ray_session

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741 (as modeling.parallel)
R = TypeVar("R")

__all__ = ["ENGINES", "RayTasks", "training_engine"]


@contextmanager
def training_engine(settings: Settings, engine: str) -> Iterator[Parallel | None]:
    """What ``train_and_register`` fits through for ``engine``: None for ``local`` (this
    process), Ray tasks for ``ray`` (Ray joined or started for the block, then left)."""
    if check_engine(engine) == "local":
        yield None
        return
    with ray_session(settings) as ray:
        yield RayTasks(ray)


class RayTasks:
    """``Parallel`` over Ray: one task of one CPU per item, the shared payload put in the
    object store once (the search maps every candidate over the same one)."""

    def __init__(self, ray: Any) -> None:
        self._ray = ray
        self._task = ray.remote(num_cpus=1)(_run_task)
        self._putting = threading.Lock()  # the search maps from a thread per family
        self._shared: tuple[object, Any] | None = None  # (the payload, its object ref)

    def map(self, fn: Callable[[S, I], R], shared: S, items: Sequence[I]) -> list[R]:
        reference = self._reference(shared)
        filters = list(warnings.filters)  # the caller's: the workers record what it would
        pending = [self._task.remote(fn, reference, item, filters) for item in items]
        try:
            outcomes = self._ray.get(pending)
        except self._ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None  # the error itself (a ConfigError), not Ray's wrapper
            raise
        values = []
        for value, caught in outcomes:
            for message, filename, lineno in caught:
                warnings.warn_explicit(message, type(message), filename, lineno)
            values.append(value)
        return values

    def _reference(self, shared: object) -> Any:
        with self._putting:
            if self._shared is None or self._shared[0] is not shared:
                self._shared = (shared, self._ray.put(shared))
            return self._shared[1]


def _run_task(
    fn: Callable[[Any, Any], Any], shared: Any, item: Any, filters: list[Any]
) -> tuple[Any, list[tuple[Warning, str, int]]]:
    """On a worker: ``fn(shared, item)`` with BLAS on one thread, and the warnings it raised
    that the caller's ``filters`` let through."""
    with (
        threadpool_limits(limits=1, user_api="blas"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.filters[:] = filters
        value = fn(shared, item)
    return value, [(w.message, w.filename, w.lineno) for w in caught]  # type: ignore[misc]

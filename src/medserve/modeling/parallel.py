"""Where the search's fits run: ``Parallel.map(fn, shared, items)`` is
``[fn(shared, item) for item in items]``, computed anywhere (in this process, or as Ray
tasks: ``medserve.scale.training``), its results in the order of ``items``.

``fn`` is a module-level function (so that another process can import it), ``shared`` the
large read-only payload every call reads (the table, its labels, the folds), sent once,
and each item a small description of one call (a candidate and a fold)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741 (the conventional name of the items' type)
R = TypeVar("R")

__all__ = ["IN_PROCESS", "InProcess", "Parallel"]


class Parallel(Protocol):
    def map(self, fn: Callable[[S, I], R], shared: S, items: Sequence[I]) -> list[R]:
        """``fn(shared, item)`` for each item, in the order of ``items``."""
        ...


class InProcess:
    """Each call in turn, in this process: what the search does without another engine."""

    def map(self, fn: Callable[[S, I], R], shared: S, items: Sequence[I]) -> list[R]:
        return [fn(shared, item) for item in items]


IN_PROCESS = InProcess()

"""Which version a name's shadow is, loaded and ready to score, as the prediction log's
thread asks for each answer: the registry is asked at most every ``refresh_s`` seconds,
so `medserve models shadow` takes effect on a running service within that time."""

from __future__ import annotations

import logging
import threading
import time

from medserve.errors import MedserveError
from medserve.scoring.catalog import ModelCatalog, ServedModel
from medserve.storage.shadows import ShadowStore

log = logging.getLogger("medserve.monitoring")


class ShadowVersions:
    def __init__(self, store: ShadowStore, catalog: ModelCatalog, refresh_s: float = 2.0) -> None:
        self._store = store
        self._catalog = catalog
        self._refresh_s = refresh_s
        self._found: dict[str, tuple[float, int | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> ServedModel | None:
        with self._lock:
            found = self._found.get(name)
        if found is None or time.monotonic() - found[0] >= self._refresh_s:
            shadow = self._store.get(name)
            found = (time.monotonic(), None if shadow is None else shadow[0])
            with self._lock:
                self._found[name] = found
        if found[1] is None:
            return None
        try:
            return self._catalog.get(name, found[1])
        except MedserveError as error:
            log.warning(
                "shadow not served",
                extra={"fields": {"model": f"{name}:{found[1]}", "why": error.message}},
            )
            return None

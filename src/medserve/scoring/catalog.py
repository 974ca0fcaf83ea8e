"""The models a running service answers with: loaded once per version, refreshed when a
new version is promoted, and isolated so one unloadable artifact never stops the others.

Requests call it from many threads at once: a version is loaded (decrypted, unpickled)
by one thread while the others asking for it wait; versions already loaded, and other
versions being loaded, are not held up by it."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from medserve.data.schema import Schema
from medserve.errors import (
    ExplanationUnavailable,
    IntegrityError,
    MedserveError,
    ModelNotFound,
    ModelUnavailable,
)
from medserve.explain import Explainer
from medserve.modeling import TrainedModel
from medserve.scoring.compiled import FastScorer
from medserve.scoring.validation import RecordValidator
from medserve.storage import ModelVersion, Registry

log = logging.getLogger("medserve.http")
# How long the production version of a name is trusted before the registry is asked again.
REFRESH_INTERVAL_S = 2.0


@dataclass(frozen=True)
class ServedModel:
    version: ModelVersion
    model: TrainedModel
    scorer: FastScorer
    validator: RecordValidator
    explainer: Explainer | None = None
    unexplainable: str | None = None  # why ``explainer`` is None

    @property
    def schema(self) -> Schema:
        return self.model.schema

    @classmethod
    def of(cls, version: ModelVersion, model: TrainedModel) -> ServedModel:
        try:
            explainer, why = Explainer(model), None
        except ExplanationUnavailable as error:
            explainer, why = None, f"model {version.ref}: {error.message}"
        scorer, validator = FastScorer.from_model(model), RecordValidator(model.schema)
        return cls(version, model, scorer, validator, explainer, why)

    def explaining(self) -> Explainer:
        if self.explainer is None:
            raise ExplanationUnavailable(self.unexplainable or "no explainer")
        return self.explainer


class ModelCatalog:
    """Resolves NAME (production) or NAME + version to a loaded, ready-to-score model."""

    def __init__(self, registry: Registry, stage: str = "production") -> None:
        self._registry = registry
        self._stage = stage
        self._loaded: dict[tuple[str, int], ServedModel] = {}
        self._failed: dict[tuple[str, int], str] = {}
        self._current: dict[str, tuple[int, float]] = {}
        # Guards the dictionaries above, held only for a lookup or an insert.
        self._lock = threading.Lock()
        # One per version being loaded: its loaders wait for each other, nobody else does.
        self._loading: dict[tuple[str, int], threading.Lock] = {}

    def preload(self) -> list[str]:
        """Load every served version now; returns one line per version that failed."""
        failures = []
        for version in self._registry.list():
            if version.stage != self._stage:
                continue
            try:
                self._load(version)
                self._current[version.name] = (version.version, time.monotonic())
            except MedserveError as error:
                failures.append(f"{version.ref}: {error.message}")
        return failures

    def serves(self, name: str) -> bool:
        """True when a version of ``name`` is loaded (cheap: no copy, for every request)."""
        with self._lock:
            return any(loaded == name for loaded, _ in self._loaded)

    def served_versions(self) -> list[ModelVersion]:
        with self._lock:
            return [m.version for m in self._loaded.values()]

    def get(self, name: str, version: int | None = None) -> ServedModel:
        """The loaded model; may query the registry and load an artifact, so call it off
        the event loop."""
        served = self.cached(name, version)
        if served is not None:
            return served
        if version is None:
            version = self._resolve(name)
        served = self._loaded.get((name, version))
        if served is not None:
            return served
        return self._load(self._registry.get(f"{name}:{version}"))

    def cached(self, name: str, version: int | None = None) -> ServedModel | None:
        """The loaded model when answering needs neither the registry nor a load (so it is
        safe on the event loop); None when only ``get`` can tell."""
        if version is None:
            current = self._current.get(name)
            if current is None or time.monotonic() - current[1] >= REFRESH_INTERVAL_S:
                return None
            version = current[0]
        return self._loaded.get((name, version))

    def _resolve(self, name: str) -> int:
        cached = self._current.get(name)
        if cached is not None and time.monotonic() - cached[1] < REFRESH_INTERVAL_S:
            return cached[0]
        found = self._registry.get(name)
        if found.stage != self._stage:
            raise ModelNotFound(
                f"model '{name}' has no {self._stage} version; promote one with "
                f"`medserve models promote {name}:VERSION` or ask for a version explicitly"
            )
        self._current[name] = (found.version, time.monotonic())
        return found.version

    def _load(self, version: ModelVersion) -> ServedModel:
        key = (version.name, version.version)
        with self._lock:
            served = self._loaded.get(key)
            if served is not None:
                return served
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                served = self._loaded.get(key)
            if served is not None:  # another thread loaded it while this one waited
                return served
            try:
                served = self._served(version)
            except IntegrityError as error:
                with self._lock:
                    self._failed[key] = error.message
                log.error(
                    "model refused", extra={"fields": {"model": version.ref, "why": error.message}}
                )
                raise ModelUnavailable(
                    f"model {version.ref} cannot be served: {error.message}"
                ) from error
            else:
                with self._lock:
                    self._loaded[key] = served
                    self._failed.pop(key, None)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
        log.info("model loaded", extra={"fields": {"model": version.ref}})
        return served

    def _served(self, version: ModelVersion) -> ServedModel:
        model = self._registry.load(version)
        if not isinstance(model, TrainedModel):
            raise ModelUnavailable(f"model {version.ref}: artifact is not a medserve model")
        return ServedModel.of(version, model)

    @property
    def failures(self) -> dict[str, str]:
        with self._lock:
            failed = list(self._failed.items())
        return {f"{name}:{version}": why for (name, version), why in failed}

"""What the families of imported models share: an estimator that is already fitted (the
model was trained elsewhere), scores the prepared frame, and keeps its weight files
beside its artifact instead of inside it (``core.stored_files``).

Pickled, it holds only its settings and the ``StoredFile`` of each weight file; unpickled
by the registry, it decrypts them into a private temporary folder (0700, files 0600),
loads the runtime from there (onnxruntime, transformers) and removes the folder at once:
the runtime holds the weights in memory."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.pipeline import Pipeline

from medserve.core.stored_files import FileReader, StoredFile, stored_file_reader
from medserve.errors import ConfigError, IntegrityError


class ImportedEstimator(ClassifierMixin, BaseEstimator):
    """An imported model's ``model`` step: ``predict_proba`` over the prepared frame.

    Subclasses define ``_load(folder)`` (the runtime from the weight files in ``folder``)
    and ``_risk(runtime, prepared)`` (the probability of the event per row)."""

    _estimator_type = "classifier"
    files: tuple[StoredFile, ...]

    def fit(self, X: Any = None, y: Any = None) -> ImportedEstimator:  # noqa: N803
        raise ConfigError(
            "an imported model is not retrained here: import a new version of it instead"
        )

    def __sklearn_is_fitted__(self) -> bool:
        return True

    @property
    def classes_(self) -> np.ndarray:
        return np.array([0, 1])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        risk = np.asarray(self._risk(self._runtime_loaded(), X), dtype=float).reshape(-1)
        return np.column_stack([1.0 - risk, risk])

    def predict(self, X: pd.DataFrame) -> np.ndarray:  # noqa: N803
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    # --- the weights -------------------------------------------------------------------

    def load_from(self, folder: Path) -> ImportedEstimator:
        """Load the runtime from the weight files in ``folder`` (at import: the user's)."""
        self._runtime = self._load(folder)
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_runtime", None)  # the weights are stored as files, never pickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        reader = stored_file_reader()
        if reader is not None:  # loaded by the registry: restore the weights now
            self._restore(reader)

    def _restore(self, reader: FileReader) -> None:
        with tempfile.TemporaryDirectory(prefix="medserve-weights-") as folder:
            for stored in self.files:
                reader(stored.artifact_path, stored.artifact_sha256, Path(folder) / stored.name)
            self.load_from(Path(folder))

    def _runtime_loaded(self) -> Any:
        runtime = self.__dict__.get("_runtime")
        if runtime is None:
            raise IntegrityError(
                "this imported model's weights are not loaded: load it through the registry "
                "(`medserve models show` names its version)"
            )
        return runtime

    def _load(self, folder: Path) -> Any:
        raise NotImplementedError

    def _risk(self, runtime: Any, prepared: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError


def is_imported(pipeline: Pipeline) -> bool:
    """True for a model fitted elsewhere (ONNX, transformers): medserve cannot refit it."""
    return isinstance(pipeline.named_steps.get("model"), ImportedEstimator)


def imported_pipeline(estimator: ImportedEstimator) -> Pipeline:
    """The pipeline of an imported model: the prepared frame straight to its estimator."""
    return Pipeline([("preprocess", "passthrough"), ("model", estimator)])

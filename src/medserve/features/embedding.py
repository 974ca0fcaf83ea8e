"""A notes column as model inputs: its sentence embeddings reduced by PCA, fitted on the
rows it is fitted on (each training fold), whitened so a head's regularisation treats the
components as it treats standardised numbers, then one indicator for a missing note
(whose components are 0: the training mean)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted

from medserve.features.text import shared

# Components kept, at most (on drug reviews 64 kept 0.75 test AUROC where 32 kept 0.71 and
# all 384 0.76); fewer where the training notes cannot support them.
DEFAULT_COMPONENTS = 128
# A component needs this many training notes.
NOTES_PER_COMPONENT = 8


class NoteEmbedding(TransformerMixin, BaseEstimator):
    """One text column (strings; NaN or None for no note) → ``width_`` numbers per row."""

    def __init__(self, components: int = DEFAULT_COMPONENTS, random_state: int = 0) -> None:
        self.components = components
        self.random_state = random_state

    def fit(self, X, y=None):
        texts, present = _notes(X)
        if present.sum() < 2:
            raise ValueError("a notes column needs at least two notes in the training rows")
        vectors = shared().encode([t for t, p in zip(texts, present, strict=True) if p])
        supported = max(1, len(vectors) // NOTES_PER_COMPONENT)
        kept = min(self.components, supported, len(vectors) - 1, vectors.shape[1])
        self.pca_ = PCA(n_components=kept, whiten=True, random_state=self.random_state)
        self.pca_.fit(vectors)
        self.width_ = kept + 1
        self.n_features_in_ = 1
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "pca_")
        texts, present = _notes(X)
        out = np.zeros((len(texts), self.width_), dtype=np.float64)
        if present.any():
            vectors = shared().encode([t for t, p in zip(texts, present, strict=True) if p])
            out[present, :-1] = self.pca_.transform(vectors)
        out[~present, -1] = 1.0
        return out

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "pca_")
        name = str(input_features[0]) if input_features is not None else "note"
        return np.array([f"{name}:pc{i + 1}" for i in range(self.width_ - 1)] + [f"{name}:none"])


def _notes(X) -> tuple[list[str], np.ndarray]:
    """The column's notes as strings ('' for none) and which rows have one."""
    if isinstance(X, pd.DataFrame):
        values = X.iloc[:, 0].tolist()
    else:
        array = np.asarray(X, dtype=object)
        values = (array[:, 0] if array.ndim == 2 else array).tolist()
    texts = [value.strip() if isinstance(value, str) else "" for value in values]
    return texts, np.array([bool(text) for text in texts], dtype=bool)

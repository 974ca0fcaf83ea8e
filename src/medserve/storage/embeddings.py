"""The notes encoder's embeddings kept between runs, encrypted at rest as the artifacts
are (they derive from patient text): files of (content key, vector) pairs under
``settings.embeddings_dir``, one per batch written, read whole on first use. It is a
cache: a file that cannot be read (a retired master key, a damaged file) is skipped with
a warning, and deleting the folder costs only the time to encode again."""

from __future__ import annotations

import io
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence

import numpy as np

from medserve.config import Settings
from medserve.core.crypto import decrypt, encrypt
from medserve.core.files import write_file_atomic
from medserve.errors import MedserveError
from medserve.storage.keystore import KeyStore

logger = logging.getLogger("medserve.embeddings")
SUFFIX = ".emb"


class EmbeddingStore:
    """``features.text.EmbeddingStore`` on the home's disk, encrypted with its master key."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = settings.embeddings_dir
        self._vectors: dict[str, np.ndarray] | None = None
        self._lock = threading.Lock()

    def _loaded(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            vectors: dict[str, np.ndarray] = {}
            files = sorted(self.folder.glob(f"*{SUFFIX}")) if self.folder.is_dir() else []
            keystore = KeyStore(self.settings, create=False) if files else None
            for path in files:
                try:
                    with np.load(
                        io.BytesIO(
                            decrypt(
                                path.read_bytes(), keystore, subject=f"embedding cache {path.name}"
                            )
                        )
                    ) as found:
                        keys, matrix = found["keys"], found["vectors"]
                except (MedserveError, OSError, ValueError, KeyError) as error:
                    logger.warning("embedding cache file %s skipped: %s", path.name, error)
                    continue
                vectors.update(zip(keys.tolist(), matrix, strict=True))
            self._vectors = vectors
        return self._vectors

    def get_many(self, keys: Sequence[str]) -> Mapping[str, np.ndarray]:
        with self._lock:
            vectors = self._loaded()
            return {key: vectors[key] for key in keys if key in vectors}

    def put_many(self, vectors: Mapping[str, np.ndarray]) -> None:
        if not vectors:
            return
        buffer = io.BytesIO()
        np.savez(
            buffer,
            keys=np.array(list(vectors), dtype="U64"),
            vectors=np.stack(list(vectors.values())).astype(np.float32),
        )
        blob = encrypt(buffer.getvalue(), KeyStore(self.settings))
        with self._lock:
            write_file_atomic(self.folder / f"{uuid.uuid4().hex}{SUFFIX}", blob)
            self._loaded().update(vectors)

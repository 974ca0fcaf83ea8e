"""Files a stored model keeps beside its artifact (an imported model's weights), and how a
model being loaded gets them back.

Large weights are not pickled into a model's artifact: each file is its own encrypted
artifact (``storage.artifacts.write_artifact_file``), and the model keeps a ``StoredFile``
per file. ``Registry.load`` unpickles a model inside ``reading_stored_files(reader)``, so
an object whose ``__setstate__`` asks ``stored_file_reader()`` gets the function that
decrypts its files (checked as they stream) to a path it chooses. The registry knows
nothing of what holds the files; the model knows nothing of where they are stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

# Where a version's row lists its stored files (``lineage[STORED_FILES]``): each entry's
# ``artifact_path`` is removed with the version.
STORED_FILES = "stored_files"

# (artifact path relative to home, the artifact's sha256, destination file) → None;
# raises IntegrityError when the artifact is missing or was altered.
FileReader = Callable[[str, str, Path], None]

_READER: ContextVar[FileReader | None] = ContextVar("medserve_stored_file_reader", default=None)


@dataclass(frozen=True)
class StoredFile:
    """One file as it was imported (its name and sha256) and the artifact that holds it."""

    name: str
    sha256: str  # of the file as imported (lineage)
    size: int
    artifact_path: str = ""
    artifact_sha256: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "size": self.size,
            "artifact_path": self.artifact_path,
            "artifact_sha256": self.artifact_sha256,
        }


@contextmanager
def reading_stored_files(reader: FileReader) -> Iterator[None]:
    """Inside the block, objects being unpickled find ``reader`` for their stored files."""
    token = _READER.set(reader)
    try:
        yield
    finally:
        _READER.reset(token)


def stored_file_reader() -> FileReader | None:
    """The reader of the model being loaded now, or None (not loaded by the registry)."""
    return _READER.get()

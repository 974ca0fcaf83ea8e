"""The one place model artifacts (and files stored beside them) are written and read.

Paths handed out and taken back are relative to ``settings.home`` so a home
directory can move. Encryption at rest will slot into ``write_artifact`` and
``read_artifact`` without callers changing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from medserve.config import Settings
from medserve.errors import IntegrityError

FILE_MODE = 0o600
DIR_MODE = 0o700


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact lies (relative to home) and what its bytes hash to."""

    artifact_id: str
    path: str
    sha256: str
    size: int


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one.

    Temp file in the same directory, flush + fsync, ``os.replace``, then fsync
    the directory so the rename survives a power cut. The file is mode 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, FILE_MODE)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def write_artifact(settings: Settings, payload: bytes) -> ArtifactRef:
    """Store ``payload`` as a new artifact ``artifacts/<id>.bin`` and describe it."""
    artifact_id = uuid.uuid4().hex
    relative = Path(settings.artifacts_dir.relative_to(settings.home)) / f"{artifact_id}.bin"
    write_file_atomic(settings.home / relative, payload)
    return ArtifactRef(
        artifact_id=artifact_id,
        path=relative.as_posix(),
        sha256=hashlib.sha256(payload).hexdigest(),
        size=len(payload),
    )


def read_artifact(settings: Settings, ref_path: str, expected_sha256: str) -> bytes:
    """Return an artifact's bytes, refusing any whose sha256 is not the recorded one."""
    path = resolve_in_home(settings, ref_path)
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(
            f"artifact {ref_path} is missing from {settings.home}: it was deleted or moved; "
            "restore it from backup or retrain"
        ) from None
    if not payload:
        raise IntegrityError(
            f"artifact {ref_path} is empty (truncated): restore it from backup or retrain"
        )
    if hashlib.sha256(payload).hexdigest() != expected_sha256:
        raise IntegrityError(
            f"artifact {ref_path} failed its integrity check (sha256 mismatch): "
            "it was modified or replaced; retrain or restore it from backup"
        )
    return payload


def delete_artifact(settings: Settings, path: str) -> None:
    """Remove a stored file (artifact or report) if it is there; used to undo a failed write."""
    with contextlib.suppress(FileNotFoundError):
        resolve_in_home(settings, path).unlink()


def resolve_in_home(settings: Settings, relative: str) -> Path:
    """Absolute path of ``relative`` under home; a path escaping home is refused."""
    home = settings.home.resolve()
    path = (home / relative).resolve()
    if not path.is_relative_to(home):
        raise IntegrityError(f"stored path {relative!r} points outside {settings.home}; refused")
    return path


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

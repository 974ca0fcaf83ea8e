"""Private files: written atomically (readers see the old file or the whole new one), or
created owner-only for writers that open them by name."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o600
DIR_MODE = 0o700


def write_file_atomic(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Temp file in the same directory, flush + fsync, then ``os.replace`` (or, with
    ``exclusive``, a hard link that raises FileExistsError when ``path`` exists), then
    fsync the directory so the rename survives a power cut. The file is mode 0600."""
    with open_atomic(path, exclusive=exclusive) as file:
        file.write(data)


@contextlib.contextmanager
def open_atomic(path: Path, *, exclusive: bool = False) -> Iterator[BinaryIO]:
    """``write_file_atomic`` for a writer that streams: a private (0600) temp file beside
    ``path`` to write into, put in place of ``path`` when the block ends (``exclusive``:
    FileExistsError if ``path`` exists), removed if the block raises."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as tmp:
            os.fchmod(tmp.fileno(), FILE_MODE)
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        if exclusive:
            os.link(tmp_name, path)  # atomic create-if-absent with the full contents
        else:
            os.replace(tmp_name, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def create_private(path: Path, *, tighten: bool = True) -> Path:
    """Make ``path`` an owner-only (0600) file before a writer that opens it by name fills it.

    Created empty when absent. An existing file is tightened to 0600 (``tighten``: for
    outputs about to be overwritten) or left as it is (for a database someone else may
    manage; see ``loose_mode``). Returns ``path``.
    """
    flags = os.O_WRONLY | os.O_CREAT | (0 if tighten else os.O_EXCL)
    try:
        fd = os.open(path, flags, FILE_MODE)
    except FileExistsError:
        return path
    try:
        if tighten:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def loose_mode(path: Path) -> int | None:
    """The permission bits of ``path`` when its group or others may access it, else None
    (also None when it does not exist)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    return mode if mode & 0o077 else None

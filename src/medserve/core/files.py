"""Private files written atomically: readers see the old file or the whole new one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def write_file_atomic(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Temp file in the same directory, flush + fsync, then ``os.replace`` (or, with
    ``exclusive``, a hard link that raises FileExistsError when ``path`` exists), then
    fsync the directory so the rename survives a power cut. The file is mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, FILE_MODE)
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

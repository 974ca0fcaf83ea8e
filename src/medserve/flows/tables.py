"""A table handed to a flow: a file the CLI names, or a DataFrame a Python caller holds.
Either way the flow gets the same frame, a name for reports and lineage, and a fingerprint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medserve.data import ReadOptions, file_sha256, read_table
from medserve.data.io import check_table, frame_sha256

# What a flow accepts as a table.
Table = Path | pd.DataFrame

# The source a DataFrame is reported as, when its caller gives it no other name.
FRAME_SOURCE = "DataFrame"


@dataclass(frozen=True)
class Source:
    """A table as read: its frame, the name reports and lineage give it, where it came from."""

    frame: pd.DataFrame
    name: str
    path: Path | None = None

    def sha256(self) -> str:
        """The file's sha256, or the DataFrame's fingerprint (``data.io.frame_sha256``)."""
        return file_sha256(self.path) if self.path is not None else frame_sha256(self.frame)


def read_source(
    data: Table,
    source_name: str | None = None,
    *,
    read: ReadOptions | None = None,
    npy_features: int | None = None,
) -> Source:
    """A file read with ``read_table`` (as ``read`` says; an .npy of ``npy_features``
    columns is all features, no label); a DataFrame copied (the caller's stays as it was)
    and checked as a file would be: columns named by text, none repeated, some rows."""
    if not isinstance(data, pd.DataFrame):
        path = Path(data)
        frame = read_table(path, read, npy_features=npy_features)
        return Source(frame, source_name or path.name, path)
    name = source_name or FRAME_SOURCE
    check_table(data, name)
    return Source(data.copy(), name)

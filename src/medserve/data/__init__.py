"""Reading tables, inferring and applying the schema, defining the outcome."""

from medserve.data.infer import infer_schema, read_schema_file
from medserve.data.io import (
    ReadOptions,
    default_target,
    file_sha256,
    read_table,
    table_notices,
    write_table,
)
from medserve.data.outcome import Outcome, resolve_outcome
from medserve.data.schema import ColumnSpec, Schema

__all__ = [
    "ColumnSpec",
    "Outcome",
    "ReadOptions",
    "Schema",
    "default_target",
    "file_sha256",
    "infer_schema",
    "read_schema_file",
    "read_table",
    "resolve_outcome",
    "table_notices",
    "write_table",
]

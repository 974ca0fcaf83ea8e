"""Options more than one command takes (train and evaluate): the report's groups, the
intended use and the model card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

GroupOption = Annotated[
    list[str] | None,
    typer.Option(
        "--group",
        help="Column whose levels get their own metrics in the report (repeatable: "
        "--group site --group sex).",
    ),
]
IntendedUseOption = Annotated[
    str | None,
    typer.Option("--intended-use", help="What the model is for, in a sentence (for the report)."),
]
ModelCardOption = Annotated[
    Path | None,
    typer.Option(
        "--model-card",
        help="YAML with intended_use, intended_users, out_of_scope, limitations, contact.",
    ),
]

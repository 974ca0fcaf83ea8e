"""Options more than one command takes: the report's groups, the intended use and the
model card (train and evaluate); the local outcome (evaluate and recalibrate); how a CSV
is read (every command that reads a table)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from medserve.data import ReadOptions

# A stored model measured or updated on another site's labelled data (evaluate, recalibrate).
LocalTargetOption = Annotated[
    str | None, typer.Option("--target", help="Outcome column, if named differently.")
]
LocalPositiveOption = Annotated[
    str | None,
    typer.Option(
        "--positive", help="Value of the outcome that is the event here, if coded differently."
    ),
]
LocalPositiveIfOption = Annotated[
    str | None,
    typer.Option("--positive-if", help="Binarise a numeric outcome here, e.g. '>0'."),
]
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
        help="YAML with intended_use, intended_users, out_of_scope, limitations, contact, "
        "and the TRIPOD+AI items people write (background, objectives, funding, …; see the "
        "README).",
    ),
]

# Notes as features (train, schema): the text family reads them (``flows.notes``).
TextOption = Annotated[
    list[str] | None,
    typer.Option(
        "--text",
        help="Free-text column (clinical notes) the model reads, as sentence embeddings; "
        "needs --deid unless --text-not-deidentified. With --model auto and --deid, the "
        "notes de-identification scrubbed are read without it.",
    ),
]
TextNotDeidentifiedOption = Annotated[
    bool,
    typer.Option(
        "--text-not-deidentified",
        help="Read --text notes that did not go through --deid; the report says the model "
        "is not Safe Harbor de-identified.",
    ),
]

# How a CSV file is read (train, schema, evaluate, predict, deid): guessed when not given.
SepOption = Annotated[
    str | None,
    typer.Option(
        "--sep",
        help="CSV delimiter: , ; tab or | (default: sniffed from a .csv's first lines; tab "
        "for .tsv).",
    ),
]
DecimalOption = Annotated[
    str | None,
    typer.Option(
        "--decimal",
        help="Decimal mark in a CSV: . or , (default: , in semicolon-separated files, as "
        "European Excel writes them; . otherwise).",
    ),
]
EncodingOption = Annotated[
    str | None,
    typer.Option(
        "--encoding",
        help="Text encoding of a CSV, e.g. utf-8, cp1252, latin-1 (default: UTF-8, else "
        "Windows-1252 with a notice).",
    ),
]


def read_options(sep: str | None, decimal: str | None, encoding: str | None) -> ReadOptions:
    """The reading options the three flags give (a ConfigError names a bad one)."""
    from medserve.data import ReadOptions

    return ReadOptions(sep=sep, decimal=decimal, encoding=encoding)

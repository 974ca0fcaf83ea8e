"""Which free-text columns a model reads as notes, and the rule that guards them: notes
are patient text, so training reads them only once they went through de-identification
(``train --deid``), unless the caller says otherwise, and then the report says they were
not de-identified (not Safe Harbor)."""

from __future__ import annotations

from typing import Any

from medserve.data import Schema
from medserve.errors import ConfigError, Location, option
from medserve.modeling.families import AUTO, reads_text

# Roles a notes column cannot have, and why.
NOT_NOTES = {
    "target": "the outcome would be read as a feature",
    "id": "an identifier is no note",
    "time": "a date is no note",
    "group": "a column the report groups by",
}
NOT_DEIDENTIFIED = (
    "WARNING: notes not de-identified: {columns} went into the model as written, as asked; "
    "this model is NOT HIPAA Safe Harbor de-identified"
)


def choose_notes(
    schema: Schema,
    *,
    text: list[str] | None,
    family: str,
    deidentified: dict[str, Any] | None,
    not_deidentified: bool,
) -> Schema:
    """``schema`` with its notes as text features: the columns ``text`` names, or, for
    ``auto`` (or a family list with a notes family), the free-text columns
    de-identification scrubbed. ConfigError when a named column is not there, or notes
    would be read that were not de-identified and ``not_deidentified`` was not given."""
    roles = {spec.name: spec.role for spec in schema.columns}
    for column in text or ():
        if column not in roles:
            raise ConfigError(
                f"{option('text')} names column '{column}', which the table does not have",
                location=Location(option="text", column=column),
            )
        if roles[column] in NOT_NOTES:
            raise ConfigError(
                f"{option('text')} names column '{column}', which is the table's "
                f"{roles[column]} column ({NOT_NOTES[roles[column]]}); name a notes column",
                location=Location(option="text", column=column),
            )
    scrubbed = _scrubbed_notes(deidentified)
    # Text features declared elsewhere (a schema file) are notes too, under the same rule.
    declared = [s.name for s in schema.features if s.type == "text"]
    if text:
        chosen = list(dict.fromkeys([*text, *declared]))
    elif _tries_notes(family) and deidentified is not None:
        found = [s.name for s in schema.columns if s.name in scrubbed and s.role not in NOT_NOTES]
        chosen = list(dict.fromkeys([*found, *declared]))
    else:
        chosen = declared
    notices = list(schema.notices)
    if not chosen:
        free = [spec.name for spec in schema.columns if spec.role == "text"]
        if free and _tries_notes(family):
            notices.append(
                f"notes: {', '.join(repr(c) for c in free)} holds free text, not read by the "
                f"model; to use it, de-identify the table in training (then {AUTO} reads "
                "notes) or name it as a text feature"
            )
        return schema.model_copy(update={"notices": notices})
    unscrubbed = [name for name in chosen if name not in scrubbed]
    record = schema.deidentification
    if unscrubbed:
        if not not_deidentified:
            why = (
                "de-identification did not recognise it as notes; declare it with "
                f"'columns: {{{unscrubbed[0]}: generalise}}' in a policy file "
                f"({option('deid_policy')})"
                if deidentified is not None
                else f"de-identify it first with {option('deid')}"
            )
            raise ConfigError(
                f"'{unscrubbed[0]}' is patient text and was not de-identified: {why}, or "
                f"train on it as written with {option('text_not_deidentified')} (the report "
                "then says it is not Safe Harbor)",
                location=Location(option="text", column=unscrubbed[0]),
            )
        warning = NOT_DEIDENTIFIED.format(columns=", ".join(repr(c) for c in unscrubbed))
        notices.insert(0, warning)
        record = {
            **(record or {"standard": None}),
            "safe_harbor": False,
            "notes_not_deidentified": unscrubbed,
        }
    # What inference said of these columns no longer holds: they are read now.
    notices = [n for n in notices if not _says_left_out(n, chosen)]
    columns = [
        spec.model_copy(update={"type": "text", "role": "feature", "categories": None})
        if spec.name in chosen
        else spec
        for spec in schema.columns
    ]
    notices.append(
        f"notes: {', '.join(repr(c) for c in chosen)} read by the text family as sentence "
        "embeddings (all-MiniLM-L6-v2); the other families leave them out"
    )
    return schema.model_copy(
        update={"columns": columns, "notices": notices, "deidentification": record}
    )


def _tries_notes(family: str) -> bool:
    if family == AUTO:
        return True
    return any(reads_text(part.strip()) for part in family.split(","))


def _scrubbed_notes(deidentified: dict[str, Any] | None) -> set[str]:
    """The columns de-identification scrubbed as free text (identifiers → placeholders)."""
    if deidentified is None:
        return set()
    return {
        column["column"]
        for column in deidentified.get("columns", ())
        if column.get("kind") == "text" and column.get("action") == "generalise"
    }


def _says_left_out(notice: str, columns: list[str]) -> bool:
    """Whether an inference notice says one of ``columns`` is not used as a feature."""
    return "not used as a feature" in notice and any(f"'{c}'" in notice for c in columns)

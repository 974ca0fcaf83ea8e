"""The de-identification report as a typed document: what `medserve deid --report` writes,
what `train --deid` records, and its JSON schema (``DeidReport.model_json_schema()``).

Every field holds names of columns, kinds, counts or settings, never a value from the
table. Version 2 added ``review`` (kept columns that a person should look at) and made
``safe_harbor`` false whenever one is flagged; version 3 ``written_as``, the name a column
of dates reduced to the year has in the output (``seen`` → ``seen_year``).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medserve.deid.detect import Kind
from medserve.deid.policy import Action, DateMode

REPORT_FORMAT = "medserve-deid-report"
REPORT_VERSION = 3
STANDARD = "HIPAA Safe Harbor, 45 CFR 164.514(b)(2)"

DetectedBy = Literal["name", "content", "type", "policy"]
ReviewReason = Literal["identifier_values", "name_like_values", "free_text", "scrubbed_text"]
REVIEW_REASONS: dict[str, str] = {
    "identifier_values": "values that look like identifiers",
    "name_like_values": "values written like names",
    "free_text": "strings no rule classified",
    "scrubbed_text": "notes scrubbed by rules",
}


class _Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnOutcome(_Document):
    """What happened to one column: its kind, how it was found, the action, counts only."""

    column: str
    kind: Kind
    detected_by: DetectedBy | None
    action: Action
    changed: int = Field(default=0, ge=0, description="Values changed (or removed).")
    details: dict[str, int] = Field(
        default_factory=dict,
        description="Counts by what was done: placeholders in notes, ages over 89, ZIP "
        "areas restricted to 000, birth dates emptied, dates without a year.",
    )
    written_as: str | None = Field(
        default=None,
        exclude_if=lambda name: name is None,
        description="The column's name in the output when it differs: dates reduced to the "
        "year under a name that says neither date nor year get a '_year' suffix.",
    )


class ReviewFlag(_Document):
    """A kept column that a person should look at before the table counts as Safe Harbor."""

    column: str
    reason: ReviewReason = Field(
        description="identifier_values: some values look like identifiers (any policy); "
        "name_like_values or free_text: strings no rule classified (a policy `keep` for "
        "the column says a person did); scrubbed_text: notes scrubbed by rules."
    )
    kind: Kind | None = Field(default=None, description="The identifier the values look like.")
    values: int = Field(ge=0, description="How many values gave the reason.")
    present: int = Field(ge=0, description="Present values in the column.")
    message: str


class RuleRecord(_Document):
    action: Action
    kind: Kind | None = Field(default=None, exclude_if=lambda kind: kind is None)


class PolicyRecord(_Document):
    fingerprint: str = Field(description="sha256 of the policy file, 'default' or 'inline'.")
    source: str | None
    dates: DateMode
    patient_id: str | None
    k: int = Field(ge=2)
    columns: dict[str, RuleRecord]


class DateHandling(_Document):
    mode: DateMode
    patient_id: str | None
    shifted_per: Literal["patient", "row"] | None
    shift_days_range: tuple[int, int] | None


class QuasiIdentifier(_Document):
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )

    column: str
    as_: str = Field(alias="as", description="How it is compared: '10-year age band', …")


class KAnonymity(_Document):
    quasi_identifiers: list[QuasiIdentifier]
    k: int = Field(ge=2)
    records: int = Field(ge=0)
    groups: int = Field(ge=0)
    min_group_size: int | None
    records_in_groups_below_k: int = Field(ge=0)
    share_in_groups_below_k: float = Field(ge=0, le=1)


class DeidReport(_Document):
    """A de-identification run: the verdict, what was done to each column, and the risk."""

    format: Literal["medserve-deid-report"] = REPORT_FORMAT
    version: Literal[2, 3] = REPORT_VERSION
    standard: str = STANDARD
    safe_harbor: bool = Field(
        description="True only when no identifier column was kept, dates were reduced to "
        "the year and no kept column is flagged for review."
    )
    not_safe_harbor_because: list[str]
    kept_identifiers: list[str] = Field(description="Columns kept although detected as PHI.")
    review: list[ReviewFlag] = Field(description="Kept columns a person should look at.")
    # keyed codes derived from identifiers: re-identification codes (45 CFR 164.514(c))
    pseudonymised: list[str]
    rows: int = Field(ge=0)
    columns_in: int = Field(ge=0)
    columns_out: int = Field(ge=0)
    policy: PolicyRecord
    key_id: str = Field(description="Fingerprint of the deid key; reveals nothing about it.")
    reference_date: dt.date = Field(description="'Today' for the 90+ birth-date rule.")
    dates: DateHandling
    columns: list[ColumnOutcome]
    k_anonymity: KAnonymity
    text_engine: str | None = Field(description="How notes were scrubbed; null without notes.")

    def to_json(self) -> dict:
        """The JSON-ready form written to files (``"as"`` spelled as in version 1)."""
        return self.model_dump(mode="json", by_alias=True)

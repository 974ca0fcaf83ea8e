"""What `deidentify` returns: the de-identified table, its typed report, and the lines
that the command line prints from it (column names, kinds and counts; never a value)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from medserve.deid.pseudonym import MAX_SHIFT_DAYS
from medserve.deid.report import ColumnOutcome, DateHandling, DeidReport, KAnonymity


@dataclass(frozen=True)
class DeidResult:
    """The de-identified table and the typed report of what was done to it."""

    frame: pd.DataFrame
    report: DeidReport

    @property
    def columns(self) -> tuple[ColumnOutcome, ...]:
        return tuple(self.report.columns)

    def summary_lines(self) -> list[str]:
        """One line per column, then the date handling and the re-identification risk."""
        rows = self.report.rows
        lines = []
        for outcome in self.columns:
            how = f" by {outcome.detected_by}" if outcome.detected_by else ""
            what = outcome.kind if outcome.kind != "none" else "no identifier"
            line = f"{outcome.column}: {what}{how} → {outcome.action}"
            if outcome.action not in ("keep", "drop"):
                line += f", {outcome.changed} of {rows} values changed"
            if outcome.details:
                line += " (" + ", ".join(f"{k}: {v}" for k, v in outcome.details.items()) + ")"
            if outcome.written_as:
                line += f", written as {outcome.written_as}"
            lines.append(line)
        lines.append(_dates_line(self.report.dates, self.columns))
        lines.append(_risk_line(self.report.k_anonymity))
        lines += [f"review {flag.column}: {flag.message}" for flag in self.report.review]
        return lines

    def safe_harbor_warning(self) -> str | None:
        """A warning when the output does not meet Safe Harbor, saying why; else None."""
        if self.report.safe_harbor:
            return None
        return "WARNING: the output is NOT HIPAA Safe Harbor: " + "; ".join(
            self.report.not_safe_harbor_because
        )


def _dates_line(dates: DateHandling, columns: tuple[ColumnOutcome, ...]) -> str:
    if dates.shifted_per == "patient":
        return (
            f"dates: shifted per patient (by '{dates.patient_id}', "
            f"±{MAX_SHIFT_DAYS} days); intervals within a patient are kept"
        )
    if dates.shifted_per == "row":
        return (
            "dates: shifted per row (no patient id column; set patient_id in the policy to "
            "keep intervals across a patient's rows)"
        )
    if dates.mode != "year":
        return "dates: none to shift"
    renamed = [f"{o.column} → {o.written_as}" for o in columns if o.written_as]
    if not renamed:
        return "dates: reduced to the year"
    return f"dates: reduced to the year; renamed so that the name says year: {', '.join(renamed)}"


def _risk_line(risk: KAnonymity) -> str:
    if not risk.quasi_identifiers:
        return "re-identification risk: no quasi-identifiers left (age, sex, ZIP3, …)"
    over = ", ".join(
        q.column + (f" ({q.as_})" if q.as_ != q.column else "") for q in risk.quasi_identifiers
    )
    return (
        f"re-identification risk over {over}: smallest group {risk.min_group_size}; "
        f"{risk.share_in_groups_below_k:.1%} of records in groups smaller than k={risk.k}"
    )

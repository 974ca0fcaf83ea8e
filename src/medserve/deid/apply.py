"""De-identify a whole table: detect, decide per column, transform, and report.

Everything is computed in memory before anything is returned, so a bad column stops
the run before a single row is written. Reports carry counts, never values.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from medserve.deid import dates as date_rules
from medserve.deid.detect import (
    DIRECT_KINDS,
    GENERALISABLE_KINDS,
    LINKING_KINDS,
    QUASI_IDENTIFIER_KINDS,
    Detection,
    detect_column,
)
from medserve.deid.generalise import generalise_ages, zip3
from medserve.deid.policy import DeidPolicy
from medserve.deid.pseudonym import (
    MAX_SHIFT_DAYS,
    check_key,
    key_fingerprint,
    pseudonymise,
    row_shift_days,
    shift_days,
)
from medserve.deid.risk import k_anonymity
from medserve.deid.text import ENGINE, ROW_KINDS, NoteScrubber, row_values
from medserve.errors import ConfigError

logger = logging.getLogger("medserve.deid")

Progress = Callable[[str, int, int], None]
REPORT_FORMAT = "medserve-deid-report"
STANDARD = "HIPAA Safe Harbor, 45 CFR 164.514(b)(2)"
# Kinds that Safe Harbor lets through unchanged; keeping any other kind breaks it.
SAFE_HARBOR_KEEPS = frozenset({"none", "sex", "race"})
_PATIENT_ID_NAME = re.compile(r"mrn|medical_record|patient|subject|person", re.IGNORECASE)


@dataclass(frozen=True)
class ColumnOutcome:
    """What happened to one column: its kind, how it was found, the action, counts only."""

    column: str
    kind: str
    detected_by: str | None
    action: str
    changed: int = 0
    details: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DeidResult:
    """The de-identified table and a JSON-ready report of what was done to it."""

    frame: pd.DataFrame
    report: dict[str, Any]
    columns: tuple[ColumnOutcome, ...]

    def summary_lines(self) -> list[str]:
        """One line per column, then the date handling and the re-identification risk."""
        rows = self.report["rows"]
        lines = []
        for outcome in self.columns:
            how = f" by {outcome.detected_by}" if outcome.detected_by else ""
            what = outcome.kind if outcome.kind != "none" else "no identifier"
            line = f"{outcome.column}: {what}{how} → {outcome.action}"
            if outcome.action not in ("keep", "drop"):
                line += f", {outcome.changed} of {rows} values changed"
            if outcome.details:
                line += " (" + ", ".join(f"{k}: {v}" for k, v in outcome.details.items()) + ")"
            lines.append(line)
        lines.append(_dates_line(self.report["dates"]))
        lines.append(_risk_line(self.report["k_anonymity"]))
        return lines

    def safe_harbor_warning(self) -> str | None:
        """A warning when the output does not meet Safe Harbor, saying why; else None."""
        if self.report["safe_harbor"]:
            return None
        return "WARNING: the output is NOT HIPAA Safe Harbor: " + "; ".join(
            self.report["not_safe_harbor_because"]
        )


def deidentify(
    frame: pd.DataFrame,
    policy: DeidPolicy | None = None,
    *,
    key: bytes,
    progress: Progress | None = None,
) -> DeidResult:
    """Apply Safe Harbor to ``frame`` under ``policy``; ``key`` is the 32-byte deid key.

    Pure: ``frame`` is left as it was. Raises ConfigError for a policy that does not
    fit the table and DataError for a column whose values cannot be handled as its
    kind (a date column with text in it); both name the column and never a value.
    """
    check_key(key)
    policy = policy or DeidPolicy()
    plan = plan_columns(frame, policy)
    kinds = {str(c): outcome.kind for c, outcome in zip(frame.columns, plan, strict=True)}
    patient_id = _patient_id(policy, plan)
    reference = policy.reference_date or dt.date.today()
    offsets = None
    if policy.dates == "shift" and any(
        o.action == "generalise" and o.kind in ("date", "birth_date") for o in plan
    ):
        offsets = _offsets(frame, patient_id, key)
    scrubber = None
    if any(o.action == "generalise" and o.kind == "text" for o in plan):
        scrubber = NoteScrubber.for_table(
            frame,
            [o.column for o in plan if o.kind == "name"],
            [o.column for o in plan if o.kind == "text"],
        )
    columns: dict[str, pd.Series] = {}
    outcomes: list[ColumnOutcome] = []
    for position, (column, decided) in enumerate(zip(frame.columns, plan, strict=True)):
        if progress is not None:
            progress("de-identifying columns", position, len(plan))
        values, outcome = _transform(
            frame, column, decided, policy, key, offsets, reference, scrubber, kinds
        )
        outcomes.append(outcome)
        if values is not None:
            columns[column] = values
        logger.debug("column %r: %s → %s", outcome.column, outcome.kind, outcome.action)
    if progress is not None:
        progress("de-identifying columns", len(plan), len(plan))
    result = pd.DataFrame(columns, index=frame.index)
    report = _report(frame, result, outcomes, policy, key, patient_id, offsets, reference)
    report["text_engine"] = ENGINE if scrubber is not None else None
    return DeidResult(frame=result, report=report, columns=tuple(outcomes))


def plan_columns(frame: pd.DataFrame, policy: DeidPolicy) -> list[ColumnOutcome]:
    """What will happen to each column (kind and action, nothing changed yet).

    Needs no key, so a policy that does not fit the table fails before a key is made.
    Raises ConfigError for policy columns the table lacks and for quasi-identifiers
    that would not be in the output.
    """
    policy.check_columns(frame.columns)
    plan = [_decide(column, frame[column], policy) for column in frame.columns]
    removed = {o.column for o in plan if o.action == "drop"}
    dropped = [q for q in policy.quasi_identifiers or () if q in removed]
    if dropped:
        raise ConfigError(
            f"{_where(policy) or 'policy: '}quasi_identifiers: {', '.join(dropped)} "
            "would be dropped by de-identification, so the risk summary cannot count "
            f"{'it' if len(dropped) == 1 else 'them'}; list only columns that stay in the output"
        )
    return plan


def _decide(column: object, values: pd.Series, policy: DeidPolicy) -> ColumnOutcome:
    rule = policy.columns.get(str(column))
    detection = detect_column(column, values)
    if rule is not None and rule.kind is not None:
        detection = Detection(str(column), rule.kind, "policy")
    kind = detection.kind
    action = rule.action if rule is not None else _default_action(kind)
    if action == "generalise" and kind not in GENERALISABLE_KINDS:
        found = "no identifier" if kind == "none" else f"'{kind}'"
        raise ConfigError(
            f"{_where(policy)}column '{column}': medserve detected {found}, which cannot be "
            f"generalised; give its kind, e.g. {{action: generalise, kind: date}} (kinds that "
            f"generalise: {', '.join(sorted(GENERALISABLE_KINDS))}), or drop or pseudonymise it"
        )
    return ColumnOutcome(str(column), kind, detection.detected_by, action)


def _default_action(kind: str) -> str:
    if kind in DIRECT_KINDS:
        return "drop"
    if kind in LINKING_KINDS:
        return "pseudonymise"
    if kind in GENERALISABLE_KINDS:
        return "generalise"
    return "keep"


def _patient_id(policy: DeidPolicy, plan: list[ColumnOutcome]) -> str | None:
    if policy.patient_id is not None:
        return policy.patient_id
    ids = [o.column for o in plan if o.kind == "record_id"]
    preferred = [c for c in ids if _PATIENT_ID_NAME.search(c)]
    return (preferred or ids or [None])[0]


def _offsets(frame: pd.DataFrame, patient_id: str | None, key: bytes) -> pd.Series:
    """Days to shift each row's dates: one offset per patient (per row without an id)."""
    if patient_id is None:
        return pd.Series([row_shift_days(key, row) for row in range(len(frame))], index=frame.index)
    patients = frame[patient_id]
    per_patient = {p: shift_days(key, p) for p in patients.dropna().unique()}
    rows = pd.Series([row_shift_days(key, row) for row in range(len(frame))], index=frame.index)
    return patients.map(per_patient).where(patients.notna(), rows).astype(int)


def _transform(
    frame: pd.DataFrame,
    column: object,
    decided: ColumnOutcome,
    policy: DeidPolicy,
    key: bytes,
    offsets: pd.Series | None,
    reference: dt.date,
    scrubber: NoteScrubber | None,
    kinds: dict[str, str],
) -> tuple[pd.Series | None, ColumnOutcome]:
    values = frame[column]
    present = int(values.notna().sum())
    if decided.action == "keep":
        return values.copy(), decided
    if decided.action == "drop":
        return None, _with(decided, changed=present)
    if decided.action == "pseudonymise":
        return pseudonymise(key, values, decided.kind), _with(decided, changed=present)
    kind, name = decided.kind, str(column)
    if kind in ("date", "birth_date"):
        parsed = date_rules.parse_dates(values, name)
        details: dict[str, int] = {}
        if kind == "birth_date":
            old = date_rules.aged_90_or_more(parsed, reference)
            parsed = parsed.mask(old)
            details["suppressed_aged_90_or_more"] = int(old.sum())
        if policy.dates == "shift":
            assert offsets is not None
            out = date_rules.shift(parsed, offsets)
        else:
            out = date_rules.to_year(parsed)
        return out, _with(decided, changed=present, details=details)
    if kind == "age":
        out, over = generalise_ages(values, name)
        return out, _with(decided, changed=over, details={"over_89": over})
    if kind == "zip":
        out, changed, restricted = zip3(values, name)
        return out, _with(decided, changed=changed, details={"restricted_to_000": restricted})
    assert kind == "text" and scrubber is not None
    return _scrub(frame, column, decided, scrubber, kinds)


def _scrub(
    frame: pd.DataFrame,
    column: object,
    decided: ColumnOutcome,
    scrubber: NoteScrubber,
    kinds: dict[str, str],
) -> tuple[pd.Series, ColumnOutcome]:
    identifier_kinds = {c: k for c, k in kinds.items() if k in ROW_KINDS and c != str(column)}
    records = frame[list(identifier_kinds)].to_dict("records") if identifier_kinds else None
    notes = frame[column]
    out = notes.astype(object).copy()
    totals: Counter[str] = Counter()
    changed = 0
    for position, note in enumerate(notes):
        if note is None or (isinstance(note, float) and pd.isna(note)):
            continue
        values = row_values(records[position], identifier_kinds) if records else []
        scrubbed, counts = scrubber.scrub(str(note), values)
        if counts:
            changed += 1
            totals.update(counts)
        out.iloc[position] = scrubbed
    return out, _with(decided, changed=changed, details=dict(sorted(totals.items())))


def _report(
    source: pd.DataFrame,
    result: pd.DataFrame,
    outcomes: list[ColumnOutcome],
    policy: DeidPolicy,
    key: bytes,
    patient_id: str | None,
    offsets: pd.Series | None,
    reference: dt.date,
) -> dict[str, Any]:
    kept = {o.column: o.kind for o in outcomes if o.column in result.columns}
    if policy.quasi_identifiers is not None:
        quasi = {c: kept[c] for c in policy.quasi_identifiers}  # plan_columns checked them
    else:
        quasi = {c: k for c, k in kept.items() if k in QUASI_IDENTIFIER_KINDS}
    kept_identifiers = [
        o.column for o in outcomes if o.action == "keep" and o.kind not in SAFE_HARBOR_KEEPS
    ]
    exceptions = []
    if kept_identifiers:
        exceptions.append(f"identifier column(s) kept: {', '.join(kept_identifiers)}")
    if offsets is not None:
        exceptions.append("dates shifted, not reduced to the year")
    return {
        "format": REPORT_FORMAT,
        "version": 1,
        "standard": STANDARD,
        "safe_harbor": not exceptions,
        "not_safe_harbor_because": exceptions,
        "kept_identifiers": kept_identifiers,
        # keyed codes derived from identifiers: re-identification codes (45 CFR 164.514(c))
        "pseudonymised": [o.column for o in outcomes if o.action == "pseudonymise"],
        "rows": len(source),
        "columns_in": source.shape[1],
        "columns_out": result.shape[1],
        "policy": policy.describe(),
        "key_id": key_fingerprint(key),
        "reference_date": reference.isoformat(),
        "dates": {
            "mode": policy.dates,
            "patient_id": patient_id,
            "shifted_per": None if offsets is None else ("patient" if patient_id else "row"),
            "shift_days_range": [-MAX_SHIFT_DAYS, MAX_SHIFT_DAYS] if offsets is not None else None,
        },
        "columns": [asdict(o) for o in outcomes],
        "k_anonymity": k_anonymity(result, quasi, policy.k),
    }


def _with(decided: ColumnOutcome, **changes: Any) -> ColumnOutcome:
    return ColumnOutcome(**(asdict(decided) | changes))


def _where(policy: DeidPolicy) -> str:
    return f"policy {policy.source}: " if policy.source else ""


def _dates_line(dates: dict[str, Any]) -> str:
    if dates["shifted_per"] == "patient":
        return (
            f"dates: shifted per patient (by '{dates['patient_id']}', "
            f"±{MAX_SHIFT_DAYS} days); intervals within a patient are kept"
        )
    if dates["shifted_per"] == "row":
        return (
            "dates: shifted per row (no patient id column; set patient_id in the policy to "
            "keep intervals across a patient's rows)"
        )
    return f"dates: {'reduced to the year' if dates['mode'] == 'year' else 'none to shift'}"


def _risk_line(risk: dict[str, Any]) -> str:
    if not risk["quasi_identifiers"]:
        return "re-identification risk: no quasi-identifiers left (age, sex, ZIP3, …)"
    over = ", ".join(
        q["column"] + (f" ({q['as']})" if q["as"] != q["column"] else "")
        for q in risk["quasi_identifiers"]
    )
    return (
        f"re-identification risk over {over}: smallest group {risk['min_group_size']}; "
        f"{risk['share_in_groups_below_k']:.1%} of records in groups smaller than k={risk['k']}"
    )

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
    is_pseudonym,
    key_fingerprint,
    pseudonymise,
    row_shift_days,
    shift_days,
)
from medserve.deid.report import (
    REVIEW_REASONS,
    ColumnOutcome,
    DateHandling,
    DeidReport,
    PolicyRecord,
    ReviewFlag,
)
from medserve.deid.result import DeidResult
from medserve.deid.review import SAFE_HARBOR_KEEPS, review_column
from medserve.deid.risk import k_anonymity
from medserve.deid.text import ENGINE, ROW_KINDS, NoteScrubber, row_values
from medserve.errors import ConfigError

logger = logging.getLogger("medserve.deid")

Progress = Callable[[str, int, int], None]
_PATIENT_ID_NAME = re.compile(r"mrn|medical_record|patient|subject|person", re.IGNORECASE)
# Columns that say which patient a row is, best first, when no record number does.
_PATIENT_KINDS = ("record_id", "ssn", "name")


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
    patients = _patients(frame, policy, plan)
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
    review = _review(outcomes, result, policy, patients)
    renamed = _year_names(result, outcomes, policy)
    outcomes = [
        _with(o, written_as=renamed[label]) if label in renamed else o
        for label, o in zip(frame.columns, outcomes, strict=True)
    ]
    report = _report(
        frame, result, outcomes, policy, key, patient_id, offsets, reference, review, scrubber
    )
    return DeidResult(frame=result.rename(columns=renamed), report=report)


def plan_columns(frame: pd.DataFrame, policy: DeidPolicy) -> list[ColumnOutcome]:
    """What will happen to each column (kind and action, nothing changed yet).

    Needs no key, so a policy that does not fit the table fails before a key is made.
    Raises ConfigError for policy columns the table lacks and for quasi-identifiers
    that would not be in the output.
    """
    policy.check_columns(frame.columns)
    plan = [_decide(column, frame[column], policy) for column in frame.columns]
    patients = _patients(frame, policy, plan)
    if patients is not None:  # a second look at what repeats with each patient's visits
        plan = [
            _decide(column, frame[column], policy, patients=patients)
            if decided.kind == "none" and decided.detected_by is None
            else decided
            for column, decided in zip(frame.columns, plan, strict=True)
        ]
    removed = {o.column for o in plan if o.action == "drop"}
    dropped = [q for q in policy.quasi_identifiers or () if q in removed]
    if dropped:
        raise ConfigError(
            f"{_where(policy) or 'policy: '}quasi_identifiers: {', '.join(dropped)} "
            "would be dropped by de-identification, so the risk summary cannot count "
            f"{'it' if len(dropped) == 1 else 'them'}; list only columns that stay in the output"
        )
    return plan


def _decide(
    column: object, values: pd.Series, policy: DeidPolicy, *, patients: pd.Series | None = None
) -> ColumnOutcome:
    rule = policy.columns.get(str(column))
    same = patients is not None and str(column) == str(patients.name)
    detection = detect_column(column, values, patients=None if same else patients)
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
    return ColumnOutcome(
        column=str(column), kind=kind, detected_by=detection.detected_by, action=action
    )


def _default_action(kind: str) -> str:
    if kind in DIRECT_KINDS:
        return "drop"
    if kind in LINKING_KINDS:
        return "pseudonymise"
    if kind in GENERALISABLE_KINDS:
        return "generalise"
    return "keep"


def _patient_id(
    policy: DeidPolicy, plan: list[ColumnOutcome], kinds: tuple[str, ...] = ("record_id",)
) -> str | None:
    """The column that says which patient a row is: the policy's patient_id, else the first
    column of the first of ``kinds`` found (one named like a patient id first)."""
    if policy.patient_id is not None:
        return policy.patient_id
    for kind in kinds:
        found = [o.column for o in plan if o.kind == kind]
        preferred = [c for c in found if _PATIENT_ID_NAME.search(c)]
        if found:
            return (preferred or found)[0]
    return None


def _patients(
    frame: pd.DataFrame, policy: DeidPolicy, plan: list[ColumnOutcome]
) -> pd.Series | None:
    """The patient of each row, as the table says it: the policy's patient_id, else a record
    number, an SSN or a name column; None when nothing says."""
    column = _patient_id(policy, plan, _PATIENT_KINDS)
    if column is None:
        return None
    position = [str(c) for c in frame.columns].index(column)
    return frame.iloc[:, position].rename(column)


def _review(
    outcomes: list[ColumnOutcome],
    result: pd.DataFrame,
    policy: DeidPolicy,
    patients: pd.Series | None,
) -> list[ReviewFlag]:
    """The flags of the columns a person should look at (see ``review.py``)."""
    flags = []
    for outcome in outcomes:
        values = result[outcome.column] if outcome.column in result else pd.Series(dtype=object)
        classified = outcome.column in policy.columns
        flag = review_column(outcome, values, classified=classified, patients=patients)
        if flag is not None:
            flags.append(flag)
    return flags


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
        done = int(values.map(is_pseudonym).sum())  # from an earlier pass: kept as they are
        return pseudonymise(key, values, decided.kind), _with(decided, changed=present - done)
    kind, name = decided.kind, str(column)
    if kind in ("date", "birth_date"):
        parsed = date_rules.parse_dates(values, name)
        details: dict[str, int] = {}
        yearless = int(date_rules.without_year(values).sum())
        if yearless:
            details["without_year_emptied"] = yearless
        if kind == "birth_date":
            old = date_rules.aged_90_or_more(parsed, reference)
            parsed = parsed.mask(old)
            details["suppressed_aged_90_or_more"] = int(old.sum())
        if policy.dates == "shift":
            assert offsets is not None
            out = date_rules.shift(parsed, offsets)
        else:
            out = date_rules.to_year(parsed)
        return out, _with(decided, changed=_differing(values, out), details=details)
    if kind == "age":
        out, over = generalise_ages(values, name)
        return out, _with(decided, changed=over, details={"over_89": over})
    if kind == "zip":
        out, changed, restricted = zip3(values, name)
        return out, _with(decided, changed=changed, details={"restricted_to_000": restricted})
    assert kind == "text" and scrubber is not None
    return _scrub(frame, column, decided, scrubber, kinds)


def _year_names(
    result: pd.DataFrame, outcomes: list[ColumnOutcome], policy: DeidPolicy
) -> dict[Any, str]:
    """Output names of the date columns reduced to the year whose names say neither date
    nor year (``dates.year_column``), by column label: a table of plain numbers says
    what they are in its header, which every format keeps."""
    if policy.dates != "year":
        return {}
    reduced = {
        o.column for o in outcomes if o.action == "generalise" and o.kind in ("date", "birth_date")
    }
    taken = {str(label) for label in result.columns}
    renamed: dict[Any, str] = {}
    for label in result.columns:
        name = date_rules.year_column(str(label), taken) if str(label) in reduced else None
        if name is not None:
            renamed[label] = name
            taken.add(name)
    return renamed


def _differing(before: pd.Series, after: pd.Series) -> int:
    """Present values whose text the transform changed (a year written again stays)."""
    present = before.notna()
    same = before[present].astype(str).str.strip() == after[present].astype(str)
    return int((~same).sum())


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
    review: list[ReviewFlag],
    scrubber: NoteScrubber | None,
) -> DeidReport:
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
    if review:
        flagged = ", ".join(f"{flag.column} ({REVIEW_REASONS[flag.reason]})" for flag in review)
        exceptions.append(f"column(s) flagged for review: {flagged}")
    return DeidReport(
        safe_harbor=not exceptions,
        not_safe_harbor_because=exceptions,
        kept_identifiers=kept_identifiers,
        review=review,
        pseudonymised=[o.column for o in outcomes if o.action == "pseudonymise"],
        rows=len(source),
        columns_in=source.shape[1],
        columns_out=result.shape[1],
        policy=PolicyRecord.model_validate(policy.describe()),
        key_id=key_fingerprint(key),
        reference_date=reference,
        dates=DateHandling(
            mode=policy.dates,
            patient_id=patient_id,
            shifted_per=None if offsets is None else ("patient" if patient_id else "row"),
            shift_days_range=(-MAX_SHIFT_DAYS, MAX_SHIFT_DAYS) if offsets is not None else None,
        ),
        columns=outcomes,
        k_anonymity=k_anonymity(result, quasi, policy.k),
        text_engine=ENGINE if scrubber is not None else None,
    )


def _with(decided: ColumnOutcome, **changes: Any) -> ColumnOutcome:
    return decided.model_copy(update=changes)


def _where(policy: DeidPolicy) -> str:
    return f"policy {policy.source}: " if policy.source else ""

"""De-identification as the first step of `train --deid`: the same Safe Harbor pass as
`medserve deid`, then generalised values made usable by a model, and a short record of
what ran for the stored schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medserve.deid.apply import deidentify, plan_columns
from medserve.deid.generalise import TOP_AGE
from medserve.deid.policy import load_policy
from medserve.deid.report import DeidReport
from medserve.errors import ConfigError, Location, option

# "90+" is modelled as this age: the boundary of the Safe Harbor group.
TOP_AGE_VALUE = "90"


@dataclass(frozen=True)
class TrainingTable:
    frame: pd.DataFrame
    deid: DeidReport
    notices: list[str]
    # Schema overrides for what de-identification produced: ZIP3 codes are places, not
    # amounts (categorical); dates reduced to a year are calendar time, not a feature.
    overrides: dict[str, dict[str, str]]

    @property
    def report(self) -> dict[str, Any]:
        """The report as JSON, as the training report's data section records it."""
        return self.deid.to_json()


def deidentify_for_training(
    frame: pd.DataFrame,
    policy_file: Path | None,
    key: Callable[[], bytes],
    *,
    target: str | None = None,
) -> TrainingTable:
    """The de-identified table, the full de-identification report, notices and overrides.

    ``key`` is called only once the policy has been checked against the table (and
    against ``target``), so a bad policy creates no key store.
    """
    policy = load_policy(policy_file, frame)
    plan = {outcome.column: outcome for outcome in plan_columns(frame, policy)}
    if target is not None and target in plan and plan[target].action == "drop":
        found = plan[target]
        why = (
            "the policy drops it"
            if target in policy.columns
            else f"it looks like an identifier ({found.kind}, by its {found.detected_by})"
        )
        raise ConfigError(
            f"de-identification would remove the target column '{target}': {why}; if it holds "
            f"no identifier, keep it with 'columns: {{{target}: keep}}' in the policy file "
            f"({option('deid_policy')})",
            location=Location(column=target),
        )
    result = deidentify(frame, policy, key=key())
    # Years keep their column's own name here (and in the report): the overrides below say
    # what they are, and a schema file or --ignore names the columns as the source has them.
    table = result.frame.rename(
        columns={o.written_as: o.column for o in result.columns if o.written_as}
    )
    report = result.report.model_copy(
        update={"columns": [o.model_copy(update={"written_as": None}) for o in result.columns]}
    )
    notices = []
    overrides: dict[str, dict[str, str]] = {}
    for outcome in result.columns:
        if outcome.column not in table or outcome.action != "generalise":
            continue
        if outcome.kind == "zip":
            overrides[outcome.column] = {"type": "categorical"}
        elif outcome.kind in ("date", "birth_date") and result.report.dates.mode == "year":
            overrides[outcome.column] = {"role": "time"}
    for outcome in result.columns:
        if outcome.kind == "age" and outcome.action == "generalise" and outcome.column in table:
            grouped = table[outcome.column] == TOP_AGE
            if grouped.any():
                table[outcome.column] = table[outcome.column].mask(grouped, TOP_AGE_VALUE)
                notices.append(
                    f"de-identification: {int(grouped.sum())} ages in '{outcome.column}' over "
                    f"89 became '{TOP_AGE}' and are modelled as {TOP_AGE_VALUE}"
                )
    for flag in result.report.review:
        if flag.column in table and flag.column != target:
            # Values that look like identifiers are no feature: a model would answer for
            # them, so any key could probe them. A schema file can still declare it.
            overrides[flag.column] = {"role": "ignore"}
            notices.append(
                f"de-identification flagged '{flag.column}' for review: not used as a "
                "feature; once checked, declare it in a schema file (role: feature)"
            )
    changed = {o.column: o.action for o in result.columns if o.action != "keep"}
    notices.insert(0, f"de-identified before training: {_described(changed)}")
    warning = result.safe_harbor_warning()
    if warning is not None:
        notices.insert(0, warning)
    return TrainingTable(table, report, notices, overrides)


def schema_record(report: DeidReport | dict[str, Any]) -> dict[str, Any]:
    """What the stored schema keeps of a de-identification run (no values, no key)."""
    if not isinstance(report, DeidReport):
        report = DeidReport.model_validate(report)
    return {
        "standard": report.standard,
        "safe_harbor": report.safe_harbor,
        "kept_identifiers": report.kept_identifiers,
        "review": [flag.column for flag in report.review],
        "policy": report.policy.source or "default",
        "policy_fingerprint": report.policy.fingerprint,
        "dates": report.dates.mode,
        "text_engine": report.text_engine,
        "key_id": report.key_id,
        "actions": {c.column: c.action for c in report.columns if c.action != "keep"},
    }


def _described(changed: dict[str, str]) -> str:
    if not changed:
        return "no identifier found, nothing changed"
    by_action: dict[str, list[str]] = {}
    for column, action in changed.items():
        by_action.setdefault(action, []).append(column)
    return "; ".join(f"{action}: {', '.join(columns)}" for action, columns in by_action.items())

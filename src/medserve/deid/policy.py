"""The de-identification policy: per-column overrides of detection, read from YAML.

A policy file::

    dates: shift            # year (default: Safe Harbor) or shift (per patient, keeps intervals)
    patient_id: mrn         # the column that says which patient a row is (date shifts, text)
    k: 5                    # groups smaller than k are counted in the risk summary
    quasi_identifiers: [age, sex, zip]   # default: detected ages, birth dates, sex, race, ZIP
    reference_date: 2025-01-01           # "today" for 90+ birth dates (default: today)
    columns:
      mrn: pseudonymise
      full_name: drop
      notes: generalise                  # free text: identifiers → [NAME], [DATE], …
      visit_day: {action: generalise, kind: date}
      study_site: keep

Actions: ``keep``, ``drop``, ``pseudonymise`` (keyed HMAC), ``generalise`` (dates → year
or shifted, ages → 90+, ZIP → first three digits, free text → scrubbed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml

from medserve.deid.detect import GENERALISABLE_KINDS, KINDS
from medserve.errors import ConfigError

Action = Literal["keep", "drop", "pseudonymise", "generalise"]
ACTIONS: tuple[str, ...] = ("keep", "drop", "pseudonymise", "generalise")
_ACTION_SPELLINGS = {"pseudonymize": "pseudonymise", "generalize": "generalise"}
DateMode = Literal["year", "shift"]
DEFAULT_K = 5
_TOP_KEYS = {"dates", "patient_id", "k", "quasi_identifiers", "reference_date", "columns"}


@dataclass(frozen=True)
class ColumnRule:
    """What the policy says about one column; ``kind`` overrides detection when set."""

    action: Action
    kind: str | None = None


@dataclass(frozen=True)
class DeidPolicy:
    """Overrides on top of detection. ``DeidPolicy()`` is the default Safe Harbor policy."""

    columns: dict[str, ColumnRule] = field(default_factory=dict)
    dates: DateMode = "year"
    patient_id: str | None = None
    k: int = DEFAULT_K
    quasi_identifiers: tuple[str, ...] | None = None
    reference_date: dt.date | None = None
    fingerprint: str = "default"  # sha256 of the policy file's bytes
    source: str | None = None

    def check_columns(self, columns: Iterable[object]) -> None:
        """ConfigError naming every policy column that the table does not have."""
        present = {str(c) for c in columns}
        named = list(self.columns) + list(self.quasi_identifiers or ())
        named += [self.patient_id] if self.patient_id else []
        missing = sorted({name for name in named if name not in present})
        if missing:
            raise ConfigError(
                f"{self._where()}names column(s) not in the data: {', '.join(missing)}; "
                f"the columns are {', '.join(sorted(present))}"
            )

    def describe(self) -> dict[str, Any]:
        """JSON-ready: what a report records about the policy that ran."""
        return {
            "fingerprint": self.fingerprint,
            "source": self.source,
            "dates": self.dates,
            "patient_id": self.patient_id,
            "k": self.k,
            "columns": {
                name: {"action": rule.action, **({"kind": rule.kind} if rule.kind else {})}
                for name, rule in self.columns.items()
            },
        }

    def _where(self) -> str:
        return f"policy {self.source}: " if self.source else "policy: "


def load_policy(path: str | Path | None, frame: pd.DataFrame) -> DeidPolicy:
    """The policy in ``path`` (YAML) checked against ``frame``'s columns; default when None."""
    if path is None:
        return DeidPolicy()
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"policy {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"policy {path}: is a directory, not a YAML file") from None
    except OSError as error:
        raise ConfigError(f"policy {path}: cannot be read ({error.strerror})") from None
    try:
        document = yaml.safe_load(raw.decode("utf-8")) if raw.strip() else {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ConfigError(f"policy {path}: not valid YAML ({first_line})") from None
    policy = parse_policy(document, source=str(path), fingerprint=hashlib.sha256(raw).hexdigest())
    policy.check_columns(frame.columns)
    return policy


def parse_policy(
    document: Any, *, source: str | None = None, fingerprint: str = "inline"
) -> DeidPolicy:
    """A policy from its parsed YAML/JSON form, with errors that name the key at fault."""
    where = f"policy {source}: " if source else "policy: "
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{where}expected a mapping with keys such as 'columns' and 'dates'")
    unknown = sorted(set(map(str, document)) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(_TOP_KEYS))}"
        )
    dates = document.get("dates", "year")
    if dates not in ("year", "shift"):
        raise ConfigError(f"{where}dates: {dates!r} is not 'year' or 'shift'")
    k = document.get("k", DEFAULT_K)
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise ConfigError(f"{where}k: must be a whole number of at least 2")
    patient_id = document.get("patient_id")
    if patient_id is not None and not isinstance(patient_id, str):
        raise ConfigError(f"{where}patient_id: must be a column name")
    quasi = document.get("quasi_identifiers")
    if quasi is not None and (
        not isinstance(quasi, list) or not all(isinstance(q, str) for q in quasi)
    ):
        raise ConfigError(f"{where}quasi_identifiers: must be a list of column names")
    reference = document.get("reference_date")
    if reference is not None:
        try:
            reference = dt.date.fromisoformat(str(reference))
        except ValueError:
            raise ConfigError(f"{where}reference_date: use YYYY-MM-DD") from None
    columns = document.get("columns") or {}
    if not isinstance(columns, dict):
        raise ConfigError(f"{where}columns: expected a mapping of column name → action")
    rules = {str(name): _parse_rule(where, str(name), entry) for name, entry in columns.items()}
    return DeidPolicy(
        columns=rules,
        dates=dates,
        patient_id=patient_id,
        k=k,
        quasi_identifiers=tuple(quasi) if quasi is not None else None,
        reference_date=reference,
        fingerprint=fingerprint,
        source=source,
    )


def _parse_rule(where: str, column: str, entry: Any) -> ColumnRule:
    kind = None
    if isinstance(entry, dict):
        extra = sorted(set(map(str, entry)) - {"action", "kind"})
        if extra or "action" not in entry:
            raise ConfigError(
                f"{where}column '{column}': give {{action: ..., kind: ...}} (kind optional)"
            )
        action, kind = entry["action"], entry.get("kind")
    else:
        action = entry
    action = _ACTION_SPELLINGS.get(str(action), action)
    if action not in ACTIONS:
        raise ConfigError(
            f"{where}column '{column}': unknown action {action!r}; use one of {', '.join(ACTIONS)}"
        )
    if kind is not None and kind not in KINDS:
        raise ConfigError(
            f"{where}column '{column}': unknown kind {kind!r}; use one of {', '.join(KINDS)}"
        )
    if action == "generalise" and kind is not None and kind not in GENERALISABLE_KINDS:
        raise ConfigError(
            f"{where}column '{column}': kind '{kind}' cannot be generalised; generalise applies "
            f"to {', '.join(sorted(GENERALISABLE_KINDS))}"
        )
    return ColumnRule(action=action, kind=kind)

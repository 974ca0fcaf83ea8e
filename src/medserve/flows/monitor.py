"""After go-live, as one use case for the HTTP API and the command line: outcomes sent
back for earlier predictions, the monitoring view (drift per window, live performance,
the shadow compared with production on the same patients, what clinicians did with the
cards), silent deployment, and the retention purge.

Everything here reads the prediction log and the windows of counts (aggregates): no
feature value is ever read back, because none is ever stored."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from medserve.config import Settings
from medserve.data import ReadOptions
from medserve.deid.pseudonym import pseudonym
from medserve.errors import (
    ConfigError,
    DataError,
    DuplicateOutcome,
    ModelNotFound,
    PredictionNotFound,
    option,
)
from medserve.flows.tables import Table, read_source
from medserve.monitoring.drift import DriftThresholds, window_drift
from medserve.monitoring.performance import live_performance, rolling_performance
from medserve.monitoring.profile import ReferenceProfile
from medserve.monitoring.shadow import compare_with_shadow
from medserve.monitoring.windows import merge_counts
from medserve.security.local_audit import record_local_action
from medserve.storage.cds_cards import CardLog
from medserve.storage.drift_counts import DriftCounts
from medserve.storage.keystore import KeyStore
from medserve.storage.predictions import PredictionLog, ReportedOutcome, ScoredOutcome
from medserve.storage.profiles import ProfileStore
from medserve.storage.registry import ModelVersion, Registry
from medserve.storage.shadows import ShadowStore

SUBJECT_PURPOSE = "monitor-subject"
# Drift windows shown, newest first.
DRIFT_WINDOWS_SHOWN = 14
# Performance windows shown (each monitor_window_s long... times this factor).
PERFORMANCE_WINDOWS = 6
# The longest retention (and purge cutoff) in days: 100 years.
MAX_RETENTION_DAYS = 36_500
# Ids named in an error, at most.
IDS_NAMED = 5


class SubjectPseudonyms:
    """The keyed pseudonym the prediction log names a caller's subject id by: its own
    purpose key, so it links a subject's predictions to their outcome and nothing else.
    The id is hashed exactly as sent: FHIR ids are case-sensitive, so 'pat-a' and
    'PAT-A' are two patients."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, subject: str) -> str:
        return pseudonym(self._key, subject, "exact")


@dataclass(frozen=True)
class OutcomeReport:
    """One observed outcome, for a prediction named by its id, or by the subject id the
    predict call carried and a time (the subject's latest prediction at or before it)."""

    outcome: int
    prediction_id: str | None = None
    subject: str | None = None
    at: datetime | None = None
    observed_at: datetime | None = None


def thresholds(settings: Settings) -> DriftThresholds:
    return DriftThresholds(
        psi=settings.monitor_psi_alert,
        missing_shift=settings.monitor_missing_alert,
        unseen_rate=settings.monitor_unseen_alert,
        min_n=settings.monitor_min_n,
    )


def record_outcomes(
    log: PredictionLog,
    model: str,
    reports: Sequence[OutcomeReport],
    subjects: Callable[[str], str],
) -> list[str]:
    """Store each report's outcome against its prediction, all or none; the prediction
    ids they were stored under, in order.

    PredictionNotFound names ids ``model`` never answered (and subjects with no
    prediction at or before their time); DuplicateOutcome names predictions that already
    have an outcome, or that the reports name twice. Nothing is stored unless all fit."""
    by_id = [report.prediction_id for report in reports if report.prediction_id is not None]
    known = log.served_ids(model, by_id)
    missing = list(dict.fromkeys(i for i in by_id if i not in known))
    if missing:
        raise PredictionNotFound(
            f"model '{model}' logged no prediction with id {_named(missing)}; send the "
            "prediction_id a predict response (or the RiskAssessment's identifier, or the "
            "card's uuid) carried; nothing in this request was stored"
        )
    ids = [_prediction_id(log, model, report, subjects) for report in reports]
    unmatched = [n for n, i in enumerate(ids) if i is None]
    if unmatched:
        report = reports[unmatched[0]]
        when = report.at.isoformat() if report.at is not None else "now"
        more = f" (and {len(unmatched) - 1} more)" if len(unmatched) > 1 else ""
        raise PredictionNotFound(
            f"outcome {unmatched[0]}: model '{model}' logged no prediction for that subject "
            f"at or before {when}{more}; send the subject id the predict call carried in "
            "`subjects`, or the prediction_id; nothing in this request was stored"
        )
    seen: set[str] = set()
    twice = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
    if twice:
        raise DuplicateOutcome(
            f"the request names prediction {_named(twice)} more than once; send each outcome once"
        )
    already = log.reported(ids)
    if already:
        raise DuplicateOutcome(
            f"prediction {_named(sorted(already))} has an outcome already; the first report "
            "stands (nothing in this request was stored)"
        )
    log.add_outcomes(
        model,
        [
            ReportedOutcome(i, report.outcome, report.observed_at)
            for i, report in zip(ids, reports, strict=True)
        ],
    )
    return ids  # type: ignore[return-value]


def _prediction_id(
    log: PredictionLog, model: str, report: OutcomeReport, subjects: Callable[[str], str]
) -> str | None:
    if report.prediction_id is not None:
        return report.prediction_id
    if report.subject is None:
        raise ConfigError("each outcome needs a prediction_id, or a subject and a time")
    at = report.at or datetime.now(UTC)
    return log.latest_for_subject(model, subjects(report.subject), at)


def _named(ids: Sequence[str]) -> str:
    shown = ", ".join(f"'{i}'" for i in ids[:IDS_NAMED])
    return shown + (f" (and {len(ids) - IDS_NAMED} more)" if len(ids) > IDS_NAMED else "")


OUTCOME_VALUES = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


def record_outcome_file(
    settings: Settings,
    name: str,
    data: Table,
    *,
    id_column: str = "prediction_id",
    outcome_column: str = "outcome",
    subject_column: str | None = None,
    at_column: str | None = None,
    read: ReadOptions | None = None,
) -> list[str]:
    """Outcomes from a table (a hospital's export: one row per prediction), as the
    feedback route takes them: by ``id_column``, or by ``subject_column`` and
    ``at_column``. All stored or none; audited (how many, never which) before storing."""
    source = read_source(data, read=read)
    frame = source.frame
    by_subject = subject_column is not None
    needed = [outcome_column, *([subject_column] if by_subject else [id_column])]
    if at_column is not None:
        needed.append(at_column)
    missing = [str(c) for c in needed if c not in frame.columns]
    if missing:
        which = option("subject_column") if by_subject else option("id_column")
        raise DataError(
            f"{source.name} has no column {', '.join(map(repr, missing))}; name the columns "
            f"with {option('outcome_column')} and {which}"
        )
    columns = (id_column, outcome_column, subject_column, at_column)
    reports = [
        _report_of(source.name, row, n, *columns)
        for n, row in enumerate(frame.to_dict("records"), 1)
    ]
    if not reports:
        raise DataError(f"{source.name} has no rows")
    key = KeyStore(settings).purpose_key(SUBJECT_PURPOSE)
    with Registry(settings) as registry:
        versions = registry.versions(name)
        if not versions:
            _no_model(name)
        record_local_action(
            settings, registry.engine, "feedback", versions[-1], n_records=len(reports)
        )
        return record_outcomes(
            PredictionLog(registry.engine), name, reports, SubjectPseudonyms(key)
        )


def _report_of(
    source: str,
    row: dict[str, Any],
    n: int,
    id_column: str,
    outcome_column: str,
    subject_column: str | None,
    at_column: str | None,
) -> OutcomeReport:
    outcome = OUTCOME_VALUES.get(str(row[outcome_column]).strip())
    if outcome is None:
        raise DataError(
            f"{source} row {n}: outcome {str(row[outcome_column])[:20]!r} is not 0 or 1"
        )
    at = None
    if at_column is not None:
        moment = pd.to_datetime(row[at_column], utc=True, errors="coerce")
        if pd.isna(moment) or not 1900 <= moment.year <= 2200:
            raise DataError(f"{source} row {n}: column '{at_column}' is not a date and time")
        at = moment.to_pydatetime()
    if subject_column is not None:
        subject = row[subject_column]
        if subject is None or (isinstance(subject, float) and np.isnan(subject)):
            raise DataError(f"{source} row {n}: column '{subject_column}' is empty")
        return OutcomeReport(outcome=outcome, subject=str(subject), at=at)
    return OutcomeReport(outcome=outcome, prediction_id=str(row[id_column]), observed_at=at)


class Monitoring:
    """The monitoring view of one model name, from the registry and the log."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        engine = registry.engine
        self.settings = settings
        self.registry = registry
        self.log = PredictionLog(engine)
        self.counts = DriftCounts(engine)
        self.profiles = ProfileStore(engine)
        self.shadows = ShadowStore(engine)
        self.cards = CardLog(engine)

    def view(self, name: str, *, now: datetime | None = None) -> dict[str, Any]:
        """Drift, live performance, the shadow comparison and card feedback for ``name``."""
        now = now or datetime.now(UTC)
        versions = {v.version: v for v in self.registry.versions(name)}
        if not versions:
            raise ModelNotFound(f"no model named '{name}'; see `medserve models list`")
        production = next((v for v in versions.values() if v.stage == "production"), None)
        shadow = self.shadows.get(name)
        window = timedelta(seconds=self.settings.monitor_window_s)
        retention = now - timedelta(days=self.settings.prediction_retention_days)
        scored = self.log.with_outcomes(name, since=retention)
        served = [row for row in scored if not row.shadow]
        return {
            "model": name,
            "production_version": production.version if production else None,
            "shadow_version": shadow[0] if shadow else None,
            "shadow_since": shadow[1].isoformat() if shadow else None,
            "window_s": self.settings.monitor_window_s,
            "min_n": self.settings.monitor_min_n,
            "log": self.log.counts(name, since=retention),
            "drift": self._drift(name, versions, now, window),
            "performance": self._performance(
                served, versions, production, _window_end(now, window), window
            ),
            "shadow": self._shadow(scored, versions, shadow),
            "cards": self._cards(name),
        }

    def _drift(
        self, name: str, versions: dict[int, ModelVersion], now: datetime, window: timedelta
    ) -> dict[str, Any]:
        since = now - window * DRIFT_WINDOWS_SHOWN
        found = self.counts.windows(name, since, merge_counts)
        # Each version's profile read once: for its windows and for the versions without.
        profiles = {version: self._profile(name, version) for version in versions}
        shown = []
        for (version, start), counts in sorted(found.items(), key=lambda i: i[0][1], reverse=True):
            profile = profiles[version] if version in profiles else self._profile(name, version)
            if profile is None:
                continue
            shown.append(
                {
                    "version": version,
                    "start": start.isoformat(),
                    "end": (start + window).isoformat(),
                    **window_drift(profile, counts, thresholds(self.settings)),
                }
            )
        without = sorted(v for v, profile in profiles.items() if profile is None)
        return {
            "windows": shown,
            "versions_without_profile": without,
            "alerts": [
                {"version": w["version"], "start": w["start"], **alert}
                for w in shown[:1]
                for alert in w.get("alerts", [])
            ],
        }

    def _profile(self, name: str, version: int) -> ReferenceProfile | None:
        document = self.profiles.get(name, version)
        return None if document is None else ReferenceProfile.from_dict(document)

    def _resamples(self, n: int) -> int:
        """Bootstrap resamples for ``n`` rows: 500, fewer for many rows (the view's cost
        grows with rows × resamples; at 10,000 rows 200 still give stable 95% CIs)."""
        return max(100, min(500, 2_000_000 // max(n, 1)))

    def _performance(
        self,
        served: list[ScoredOutcome],
        versions: dict[int, ModelVersion],
        production: ModelVersion | None,
        now: datetime,
        window: timedelta,
    ) -> dict[str, Any]:
        by_version: dict[str, Any] = {}
        for version in sorted({row.model_version for row in served}, reverse=True):
            rows = [row for row in served if row.model_version == version]
            threshold = versions[version].threshold if version in versions else 0.5
            y = np.array([row.outcome for row in rows], dtype=int)
            risk = np.array([row.risk for row in rows], dtype=float)
            by_version[str(version)] = {
                "overall": live_performance(
                    y, risk, threshold, min_n=self.settings.monitor_min_n,
                    n_resamples=self._resamples(len(y)),
                ),  # fmt: skip
                "windows": rolling_performance(
                    [row.made_at for row in rows],
                    y,
                    risk,
                    threshold,
                    window=window,
                    now=now,
                    n_windows=PERFORMANCE_WINDOWS,
                    min_n=self.settings.monitor_min_n,
                    n_resamples=self._resamples(len(y)),
                ),
            }
        return {"versions": by_version}

    def _shadow(
        self,
        scored: list[ScoredOutcome],
        versions: dict[int, ModelVersion],
        shadow: tuple[int, datetime] | None,
    ) -> dict[str, Any] | None:
        shadows = [r for r in scored if r.shadow]
        if shadow is not None:
            compared_version: int | None = shadow[0]
        else:  # none now: the last one that ran (never several versions mixed as one)
            compared_version = shadows[-1].model_version if shadows else None
        shadowed = {r.prediction_id: r for r in shadows if r.model_version == compared_version}
        pairs = [
            (row, shadowed[row.prediction_id])
            for row in scored
            if not row.shadow and row.prediction_id in shadowed
        ]
        if compared_version is None:
            return None
        shadow_version = compared_version
        production_versions = sorted({p.model_version for p, _ in pairs})
        y = np.array([p.outcome for p, _ in pairs], dtype=int)
        compared = compare_with_shadow(
            y,
            np.array([p.risk for p, _ in pairs], dtype=float),
            np.array([s.risk for _, s in pairs], dtype=float),
            threshold_production=_threshold(versions, production_versions[-1])
            if production_versions
            else 0.5,
            threshold_shadow=_threshold(versions, shadow_version),
            min_n=self.settings.monitor_min_n,
            n_resamples=self._resamples(len(y)),
        )
        return {
            "version": shadow_version,
            "production_versions": production_versions,
            **compared,
        }

    def _cards(self, name: str) -> dict[str, Any]:
        feedback = self.cards.outcomes(name)
        reasons: dict[str, int] = {}
        for item in feedback:
            for reason in item["reasons"] or []:
                code = str(reason.get("code", "unspecified"))
                reasons[code] = reasons.get(code, 0) + 1
        counted = {
            "feedback": len(feedback),
            "accepted": sum(1 for item in feedback if item["outcome"] == "accepted"),
            "overridden": sum(1 for item in feedback if item["outcome"] == "overridden"),
        }
        if counted["feedback"] < self.settings.monitor_min_n:
            return {
                "suppressed": True,
                "feedback": None,
                "reason": _few("cards with feedback", self.settings),
            }
        return {"suppressed": False, **counted, "override_reasons": reasons}


def _window_end(now: datetime, window: timedelta) -> datetime:
    """The end of the window ``now`` is in: performance windows line up with drift's."""
    seconds = window.total_seconds()
    return datetime.fromtimestamp((now.timestamp() // seconds + 1) * seconds, UTC)


def _few(what: str, settings: Settings) -> str:
    return f"fewer than {settings.monitor_min_n} {what} (MEDSERVE_MONITOR_MIN_N)"


def _threshold(versions: dict[int, ModelVersion], version: int) -> float:
    found = versions.get(version)
    return found.threshold if found is not None else 0.5


def set_shadow(settings: Settings, ref: str, by: str) -> ModelVersion:
    """Make ``ref`` (NAME:VERSION) the version scored silently beside production."""
    if ":" not in ref:
        raise ConfigError(f"name the candidate's version: `medserve models shadow {ref}:VERSION`")
    with Registry(settings) as registry:
        version = registry.get(ref)
        if version.stage == "production":
            raise ConfigError(
                f"{version.ref} is the production version; a shadow is a candidate scored beside it"
            )
        if version.stage == "archived":
            raise ConfigError(f"{version.ref} is archived; shadow a candidate version")
        ShadowStore(registry.engine).set(version.name, version.version, by)
    return version


def stop_shadow(settings: Settings, name: str) -> int | None:
    with Registry(settings) as registry:
        registry.versions(name) or _no_model(name)
        return ShadowStore(registry.engine).clear(name)


def _no_model(name: str) -> None:
    raise ModelNotFound(f"no model named '{name}'; see `medserve models list`")


@dataclass(frozen=True)
class Purged:
    before: datetime
    predictions: int
    outcomes: int
    windows: int


def purge(settings: Settings, older_than_days: int | None = None) -> Purged:
    """Remove predictions, their outcomes and drift windows older than the retention
    (``prediction_retention_days``, or ``older_than_days``)."""
    days = settings.prediction_retention_days if older_than_days is None else older_than_days
    if not 0 <= days <= MAX_RETENTION_DAYS:
        raise ConfigError(
            f"{option('older_than_days')} must be 0 to {MAX_RETENTION_DAYS} days (100 years)"
        )
    before = datetime.now(UTC) - timedelta(days=days)
    with Registry(settings) as registry:
        predictions, outcomes = PredictionLog(registry.engine).purge(before)
        windows = DriftCounts(registry.engine).purge(before)
    return Purged(before, predictions, outcomes, windows)

"""The prediction log's writer: every channel hands it what it answered, and a thread of
its own logs each prediction, adds the records to this window's counts in the version's
reference-profile binning, and scores the name's shadow version on the same records.

None of that is on the response path: ``record`` only puts the answer on a queue (a full
queue drops it, counted, rather than slow a clinician's answer down). The records stay in
memory only until the thread has counted them; their values are never written. The thread
writes in batches: one transaction for the log rows of the requests answered within
``BATCH_WAIT_S`` of each other, and each window's counts (this process's own row, replaced:
storage/drift_counts.py) at most every ``counts_every_s`` seconds and on ``flush``; drift
is measured on them at most every ``drift_every_s`` seconds (bench/monitoring.py: its
tests cost more than the counting).

Unlike the audit trail, the log does not fail closed: a prediction is answered even when
its log row cannot be written (the loss is counted and logged, without values), because
an unanswered clinician is worse than a gap in monitoring. Feedback for a prediction whose
row was lost is refused as unknown."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from medserve.errors import MedserveError
from medserve.monitoring.profile import ReferenceProfile
from medserve.monitoring.windows import batch_counts, merge_counts
from medserve.scoring.catalog import ServedModel
from medserve.scoring.encoding import Record
from medserve.scoring.predictor import Prediction, Predictor
from medserve.storage.drift_counts import Counts, DriftCounts, WindowKey
from medserve.storage.predictions import LoggedPrediction, PredictionLog
from medserve.storage.profiles import ProfileStore

log = logging.getLogger("medserve.monitoring")
# Answers waiting to be logged, at most; beyond it they are dropped (and counted).
MAX_QUEUED = 10_000
# Records waiting (in those answers), at most: what the queue may hold in memory.
MAX_QUEUED_RECORDS = 200_000
# Answers logged in one transaction, at most.
MAX_BATCH = 500
# How long the thread waits after an answer for others to log with it in one transaction.
BATCH_WAIT_S = 0.05
# How often the windows' drift is measured (gauges, alerts), at most; and on every flush.
DRIFT_EVERY_S = 30.0
# Markers a flush puts on the queue: save the counts; save them and measure drift.
SAVE, MEASURE = "save", "measure"
# A shadow that cannot score is said in the log at most this often per model and reason.
SHADOW_WARN_EVERY_S = 60.0
# How long a version's reference profile (or its absence) is trusted before a re-read.
PROFILE_REFRESH_S = 30.0


@dataclass(frozen=True, slots=True)
class Answered:
    """What one call answered: the records it scored, and how, through which channel.
    ``subjects`` are pseudonyms (already keyed) of the caller's subject ids, per record."""

    served: ServedModel
    records: Sequence[Record]
    predictions: Sequence[Prediction]
    channel: str
    subjects: Sequence[str | None] | None = None
    made_at: datetime = field(default_factory=lambda: datetime.now(UTC))


WindowObserver = Callable[[WindowKey, ReferenceProfile, Counts], None]


class PredictionRecorder:
    """Logs answers, counts windows and scores shadows, in one background thread.

    ``shadow_for(name)`` is the version scored silently beside ``name``'s (None when there
    is none); ``on_window`` is told each window's counts after they are saved (drift
    alerts and gauges hang on it)."""

    def __init__(
        self,
        predictions: PredictionLog,
        counts: DriftCounts,
        profiles: ProfileStore,
        predictor: Predictor,
        *,
        window_s: int,
        shadow_for: Callable[[str], ServedModel | None] | None = None,
        on_window: WindowObserver | None = None,
        on_shadow: Callable[[str, float], None] | None = None,
        counts_every_s: float = 1.0,
        drift_every_s: float = DRIFT_EVERY_S,
        max_queued: int = MAX_QUEUED,
        max_queued_records: int = MAX_QUEUED_RECORDS,
    ) -> None:
        self._predictions = predictions
        self._counts = counts
        self._profiles = profiles
        self._predictor = predictor
        self._window_s = window_s
        self._shadow_for = shadow_for
        self._on_window = on_window
        self._on_shadow = on_shadow
        self._counts_every_s = counts_every_s
        self.writer = uuid.uuid4().hex
        self._queue: queue.Queue[Answered | str] = queue.Queue(max_queued)
        self._windows: dict[WindowKey, Counts] = {}
        self._unsaved: set[WindowKey] = set()
        self._unmeasured: set[WindowKey] = set()
        self._drift_every_s = drift_every_s
        self._profile_cache: dict[tuple[str, int], tuple[float, ReferenceProfile | None]] = {}
        self._submitted = 0
        self._done = 0
        self._progress = threading.Condition()
        self.dropped = 0
        self.lost = 0
        self._queued_records = 0
        self._max_queued_records = max_queued_records
        self._evicted: set[WindowKey] = set()
        self._closing = False
        self._stop = threading.Event()
        self._shadow_warned: dict[tuple[str, str], float] = {}
        self._thread = threading.Thread(target=self._run, name="medserve-monitor", daemon=True)
        self._thread.start()

    def record(self, answered: Answered) -> None:
        """Queue ``answered`` to be logged; never blocks. Past ``max_queued`` answers or
        ``max_queued_records`` records waiting, it is dropped (and counted)."""
        n = len(answered.records)
        with self._progress:
            if self._closing or self._queued_records + n > self._max_queued_records:
                self.dropped += len(answered.predictions)
                return
            try:
                self._queue.put_nowait(answered)
            except queue.Full:
                self.dropped += len(answered.predictions)
                return
            self._submitted += 1
            self._queued_records += n

    def flush(self, timeout_s: float | None = 10.0, *, measure: bool = False) -> bool:
        """Wait until everything queued so far is logged and its counts saved (and, with
        ``measure``, drift measured on them); False on timeout. Never blocks longer than
        ``timeout_s`` (a full queue gets no marker: its counts are saved every
        ``counts_every_s`` all the same)."""
        with self._progress:
            try:
                self._queue.put_nowait(MEASURE if measure else SAVE)
                self._submitted += 1
            except queue.Full:
                pass
            target = self._submitted
            return self._progress.wait_for(lambda: self._done >= target, timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Log what is queued (within ``timeout_s``), then stop; answers still queued
        after that are counted as dropped and said in the log."""
        with self._progress:
            if self._closing:
                return
            self._closing = True
        self.flush(timeout_s, measure=True)  # the last windows' alerts and gauges too
        self._stop.set()
        try:
            self._queue.put_nowait(SAVE)  # wake the thread now, not at its next timeout
        except queue.Full:
            pass
        self._thread.join(timeout_s)
        left = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Answered):
                left += len(item.predictions)
        if left:
            self.dropped += left
            log.error("predictions not logged at shutdown", extra={"fields": {"n": left}})

    def window_start(self, moment: datetime) -> datetime:
        seconds = int(moment.timestamp()) // self._window_s * self._window_s
        return datetime.fromtimestamp(seconds, UTC)

    def _run(self) -> None:
        last_saved = last_measured = time.monotonic()
        while not self._stop.is_set():
            batch = self._next_batch()
            answers = [item for item in batch if isinstance(item, Answered)]
            marker = len(answers) < len(batch)
            asked = MEASURE in batch
            try:
                self._log(answers)
                now = time.monotonic()
                if marker or now - last_saved >= self._counts_every_s:
                    measure = asked or now - last_measured >= self._drift_every_s
                    self._save_counts(measure=measure)
                    last_saved = now
                    if measure:
                        last_measured = now
            except Exception:  # the thread must outlive any one bad batch
                log.exception("monitoring batch failed")
            finally:
                with self._progress:
                    self._done += len(batch)
                    self._queued_records -= sum(len(a.records) for a in answers)
                    self._progress.notify_all()

    def _next_batch(self) -> list[Answered | str]:
        """The answers queued within ``BATCH_WAIT_S`` of the first (up to MAX_BATCH, or
        until a flush marker): one transaction and one count for many requests, even when
        they come one at a time. Empty after ``counts_every_s`` with nothing queued."""
        try:
            first = self._queue.get(timeout=self._counts_every_s)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + BATCH_WAIT_S
        while isinstance(first, Answered) and len(batch) < MAX_BATCH:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
            if not isinstance(item, Answered):
                break
        return batch

    def _log(self, answers: list[Answered]) -> None:
        """Write the answers' rows (and their shadows'); count their windows. Whatever
        fails in the shadow or the counts, the answers' own rows are still written."""
        if not answers:
            return
        rows: list[LoggedPrediction] = []
        for answered in answers:
            rows.extend(self._rows(answered, answered.served, answered.predictions, shadow=False))
            try:
                rows.extend(self._shadow_rows(answered))
            except Exception as error:  # a shadow's fault is never production's
                self._warn_shadow(answered.served.version.name, type(error).__name__)
        try:
            self._count(answers)
        except Exception as error:
            log.error("drift not counted", extra={"fields": {"why": type(error).__name__}})
        try:
            self._predictions.write(rows)
        except Exception as error:
            self.lost += sum(1 for row in rows if not row.shadow)
            why = error.message if isinstance(error, MedserveError) else type(error).__name__
            log.error("predictions not logged", extra={"fields": {"why": why}})

    def _warn_shadow(self, name: str, why: str) -> None:
        """Say once a minute per model and reason that its shadow was not scored."""
        now = time.monotonic()
        if now - self._shadow_warned.get((name, why), -SHADOW_WARN_EVERY_S) >= SHADOW_WARN_EVERY_S:
            self._shadow_warned[(name, why)] = now
            log.warning("shadow not scored", extra={"fields": {"model": name, "why": why}})

    @staticmethod
    def _rows(
        answered: Answered,
        served: ServedModel,
        predictions: Sequence[Prediction],
        *,
        shadow: bool,
    ) -> list[LoggedPrediction]:
        subjects = answered.subjects or [None] * len(predictions)
        return [
            LoggedPrediction(
                prediction_id=prediction.prediction_id,
                model=served.version.name,
                model_version=served.version.version,
                shadow=shadow,
                made_at=answered.made_at,
                channel=answered.channel,
                risk=prediction.risk,
                label=prediction.label,
                band=prediction.band,
                subject=subject,
            )
            for prediction, subject in zip(predictions, subjects, strict=True)
        ]

    def _shadow_rows(self, answered: Answered) -> list[LoggedPrediction]:
        """The shadow's risks for the same records under the same prediction ids; none
        when the name has no shadow, or the records do not fit the shadow's schema."""
        if self._shadow_for is None:
            return []
        name = answered.served.version.name
        try:
            shadow = self._shadow_for(name)
            if shadow is None or shadow.version.version == answered.served.version.version:
                return []
            started = time.perf_counter()
            self._predictor.validate(shadow, answered.records)
            scored = self._predictor.scored(shadow, answered.records)
        except MedserveError as error:
            log.warning("shadow not scored", extra={"fields": {"model": name, "why": error.code}})
            return []
        if self._on_shadow is not None:
            self._on_shadow(name, time.perf_counter() - started)
        same_ids = [
            Prediction(p.risk, p.label, p.band, prediction_id=served.prediction_id)
            for p, served in zip(scored, answered.predictions, strict=True)
        ]
        return self._rows(answered, shadow, same_ids, shadow=True)

    def _count(self, answers: list[Answered]) -> None:
        """Add the answers' records to their windows, one count per version and window."""
        grouped: dict[WindowKey, tuple[ServedModel, list[Record], list[float]]] = {}
        for answered in answers:
            version = answered.served.version
            key = (version.name, version.version, self.window_start(answered.made_at))
            _, records, risks = grouped.setdefault(key, (answered.served, [], []))
            records.extend(answered.records)
            risks.extend(p.risk for p in answered.predictions)
        for key, (served, records, risks) in grouped.items():
            if key in self._evicted:
                # Its window was saved for good: a new row would replace its counts.
                log.warning("late answers not counted", extra={"fields": {"n": len(records)}})
                continue
            profile = self._profile(key[0], key[1])
            if profile is None:
                continue
            counts = batch_counts(profile, served.schema, records, risks)
            self._windows[key] = merge_counts(self._windows.get(key, {}), counts)
            self._unsaved.add(key)

    def _profile(self, name: str, version: int) -> ReferenceProfile | None:
        cached = self._profile_cache.get((name, version))
        if cached is not None and time.monotonic() - cached[0] < PROFILE_REFRESH_S:
            return cached[1]
        document = self._profiles.get(name, version)
        profile = None if document is None else ReferenceProfile.from_dict(document)
        self._profile_cache[(name, version)] = (time.monotonic(), profile)
        return profile

    def _save_counts(self, *, measure: bool) -> None:
        """Save the windows that changed; with ``measure``, tell ``on_window`` of every
        window changed since it was last told (drift's tests are the costly part: they run
        at most every ``drift_every_s``, and on ``flush``)."""
        if self._unsaved:
            changed = {key: self._windows[key] for key in self._unsaved}
            self._counts.save(self.writer, changed)
            self._unmeasured.update(self._unsaved)
            self._unsaved.clear()
        if measure and self._unmeasured:
            unmeasured = {k: self._windows[k] for k in self._unmeasured if k in self._windows}
            self._unmeasured.clear()
            for key, counts in unmeasured.items():
                profile = self._profile(key[0], key[1])
                if profile is not None and self._on_window is not None:
                    self._on_window(key, profile, counts)
        # Windows that ended before the last one are saved for good; the last one stays,
        # for answers still queued when it ended (a new row would replace its counts).
        current = self.window_start(datetime.now(UTC)).timestamp()
        for key in [k for k in self._windows if k[2].timestamp() < current - self._window_s]:
            if key not in self._unsaved:
                del self._windows[key]
                self._evicted.add(key)
        self._evicted = {k for k in self._evicted if k[2].timestamp() >= current - 7 * 86_400}

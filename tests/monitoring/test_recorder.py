"""The prediction log's thread under faults: a full queue never blocks an answer or a
flush, a shadow that fails never costs production's rows, a shutdown counts what it could
not log, and an answer that comes after its window was saved for good never replaces the
window's counts."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from medserve.config import Settings
from medserve.flows import TrainRequest, train_and_register
from medserve.monitoring.recorder import Answered, PredictionRecorder
from medserve.monitoring.windows import merge_counts
from medserve.scoring.catalog import ServedModel
from medserve.scoring.predictor import Predictor
from medserve.storage import Registry
from medserve.storage.drift_counts import DriftCounts
from medserve.storage.predictions import PredictionLog
from medserve.storage.profiles import ProfileStore
from support.servers import json_records

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, heart_csv):
    settings = Settings(home=tmp_path_factory.mktemp("recorder") / "home")
    train_and_register(
        settings,
        TrainRequest(data=heart_csv, name="heart", target="num", positive_if=">0",
                     family="logistic", cv=3, ignore=["id"]),
    )  # fmt: skip
    frame = pd.read_csv(heart_csv, dtype=str, keep_default_na=False, na_values=[""])
    return settings, json_records(frame.drop(columns=["id", "num"]))[:40]


@pytest.fixture
def parts(trained):
    settings, records = trained
    registry = Registry(settings)
    version = registry.get("heart")
    served = ServedModel.of(version, registry.load(version))
    predictor = Predictor(settings.bands_for, 10_000)
    yield registry, served, predictor, records
    with registry.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM predictions")
        connection.exec_driver_sql("DELETE FROM drift_counts")
    registry.close()


class SlowLog(PredictionLog):
    """The real log, each write held up (a slow database)."""

    def __init__(self, engine, delay_s: float) -> None:
        super().__init__(engine)
        self.delay_s = delay_s

    def write(self, predictions):
        time.sleep(self.delay_s)
        super().write(predictions)


def _answered(served, predictor, records, **extra):
    return Answered(served, records, predictor.predict(served, records), "rest", **extra)


def _logged(registry) -> int:
    with registry.engine.connect() as connection:
        return connection.exec_driver_sql("SELECT count(*) FROM predictions").scalar_one()


def _recorder(registry, predictor, log=None, **options) -> PredictionRecorder:
    engine = registry.engine
    return PredictionRecorder(
        log or PredictionLog(engine), DriftCounts(engine), ProfileStore(engine), predictor,
        window_s=3600, **options,
    )  # fmt: skip


def test_a_full_queue_drops_answers_and_never_blocks_a_flush(parts):
    registry, served, predictor, records = parts
    recorder = _recorder(registry, predictor, SlowLog(registry.engine, 0.3), max_queued=3)
    try:
        started = time.monotonic()
        for _ in range(20):
            recorder.record(_answered(served, predictor, records[:1]))
        assert time.monotonic() - started < 2  # record() never waited for the database
        done = threading.Event()
        threading.Thread(target=lambda: (recorder.flush(1.0), done.set()), daemon=True).start()
        assert done.wait(5), "flush blocked on a full queue"
        assert recorder.dropped > 0
    finally:
        recorder.close(5)
    assert _logged(registry) + recorder.dropped == 20


def test_a_failing_shadow_never_costs_productions_rows(parts):
    registry, served, predictor, records = parts

    def broken_shadow(name):
        raise ValueError("the shadow's runtime failed")

    recorder = _recorder(registry, predictor, shadow_for=broken_shadow)
    try:
        for start in range(0, 10, 2):
            recorder.record(_answered(served, predictor, records[start : start + 2]))
        assert recorder.flush(10)
    finally:
        recorder.close()
    assert _logged(registry) == 10 and recorder.lost == 0


def test_a_shutdown_counts_what_it_could_not_log(parts):
    registry, served, predictor, records = parts
    recorder = _recorder(registry, predictor, SlowLog(registry.engine, 0.2))
    for start in range(30):
        recorder.record(_answered(served, predictor, records[start : start + 1]))
    recorder.close(timeout_s=0.5)
    assert _logged(registry) + recorder.dropped == 30
    recorder.record(_answered(served, predictor, records[:1]))  # after close: dropped
    assert _logged(registry) + recorder.dropped == 31


def test_a_late_answer_never_replaces_a_window_saved_for_good(parts):
    registry, served, predictor, records = parts
    recorder = _recorder(registry, predictor)
    old = datetime.now(UTC) - timedelta(hours=5)
    try:
        recorder.record(_answered(served, predictor, records[:30], made_at=old))
        assert recorder.flush(10)
        recorder.record(_answered(served, predictor, records[:2]))  # now: evicts the old one
        assert recorder.flush(10)
        recorder.record(_answered(served, predictor, records[:3], made_at=old))
        assert recorder.flush(10)
    finally:
        recorder.close()
    windows = DriftCounts(registry.engine).windows("heart", old - timedelta(hours=1), merge_counts)
    start = recorder.window_start(old)
    assert windows[(served.version.version, start)]["n"] == 30

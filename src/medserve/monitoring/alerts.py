"""Drift alerts as they happen: each window's counts, once saved, are measured against the
version's reference profile; its measures go to the gauges, and an alert that is new for
the window goes to the log and, when one is configured, to a webhook (a JSON POST of
aggregates: model, version, window, feature, measure, value, threshold, sentence; never
a record).

The webhook is posted from a thread of its own with a short timeout, so a slow or dead
receiver delays neither answers nor the prediction log; a failed post is logged."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx

from medserve.monitoring.drift import DriftThresholds, window_drift
from medserve.monitoring.profile import ReferenceProfile
from medserve.storage.drift_counts import Counts, WindowKey

log = logging.getLogger("medserve.monitoring")
WEBHOOK_TIMEOUT_S = 5.0

# (model, version, the window's drift) -> gauges set
GaugeSink = Callable[[str, int, dict[str, Any]], None]


class DriftWatch:
    """Measures each saved window and raises its new alerts once."""

    def __init__(
        self,
        thresholds: DriftThresholds,
        window_s: int,
        *,
        gauges: GaugeSink | None = None,
        webhook_url: str | None = None,
    ) -> None:
        self._thresholds = thresholds
        self._window_s = window_s
        self._gauges = gauges
        self._webhook_url = webhook_url
        self._raised: set[tuple[WindowKey, str, str | None]] = set()
        self._lock = threading.Lock()
        self._posts = ThreadPoolExecutor(1, thread_name_prefix="medserve-webhook")

    def __call__(self, key: WindowKey, profile: ReferenceProfile, counts: Counts) -> None:
        drift = window_drift(profile, counts, self._thresholds)
        model, version, start = key
        if self._gauges is not None:
            self._gauges(model, version, drift)
        for alert in drift.get("alerts", []):
            raised = (key, alert["metric"], alert.get("feature"))
            with self._lock:
                if raised in self._raised:
                    continue
                self._raised.add(raised)
            event = {
                "event": "medserve.drift",
                "model": model,
                "version": version,
                "window_start": start.isoformat(),
                "window_end": (start + timedelta(seconds=self._window_s)).isoformat(),
                "n": drift["n"],
                **alert,
            }
            log.warning("drift alert", extra={"fields": event})
            if self._webhook_url is not None:
                self._posts.submit(self._post, event)
        self._forget_old(start)

    def close(self) -> None:
        self._posts.shutdown(wait=True)

    def _post(self, event: dict[str, Any]) -> None:
        assert self._webhook_url is not None
        try:
            response = httpx.post(self._webhook_url, json=event, timeout=WEBHOOK_TIMEOUT_S)
            response.raise_for_status()
        except Exception as error:  # noqa: BLE001 (any failure: said, never raised)
            log.error(
                "drift webhook failed",
                extra={"fields": {"why": type(error).__name__, "model": event["model"]}},
            )

    def _forget_old(self, start: Any) -> None:
        """Alerts of windows two or more before ``start`` can no longer repeat."""
        with self._lock:
            self._raised = {
                raised
                for raised in self._raised
                if (start - raised[0][2]).total_seconds() < 2 * self._window_s
            }

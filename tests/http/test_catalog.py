"""The model catalog under many request threads: a version being loaded (decrypted and
unpickled) holds up only the requests for that version, and is loaded once."""

from __future__ import annotations

import threading
from collections import Counter

from medserve.config import Settings
from medserve.scoring.catalog import ModelCatalog
from medserve.storage import ModelVersion, Registry

# Only for a broken catalog: lets a blocked load go, so the test fails instead of hanging.
WATCHDOG_S = 60


class GatedRegistry(Registry):
    """The real registry, whose load of one version waits until the test lets it go."""

    def __init__(self, settings: Settings, gated: str) -> None:
        super().__init__(settings)
        self.gated = gated
        self.loading = threading.Event()
        self.release = threading.Event()
        self.loads: Counter[str] = Counter()

    def load(self, model_version: ModelVersion | str) -> object:
        ref = model_version if isinstance(model_version, str) else model_version.ref
        self.loads[ref] += 1
        if ref == self.gated:
            self.loading.set()
            self.release.wait(WATCHDOG_S)
        return super().load(model_version)


def test_a_slow_load_holds_up_only_its_own_version(seed_home):
    events: list[str] = []
    with GatedRegistry(seed_home, gated="heart:1") as registry:
        catalog = ModelCatalog(registry)

        def let_go() -> None:
            events.append("watchdog let the load go")
            registry.release.set()

        watchdog = threading.Timer(WATCHDOG_S, let_go)
        watchdog.start()
        heart = []
        first, second = (
            threading.Thread(target=lambda: heart.append(catalog.get("heart"))) for _ in range(2)
        )
        first.start()
        assert registry.loading.wait(WATCHDOG_S)
        second.start()  # asks for the version being loaded: waits for the first
        pima = catalog.get("pima")  # another version: served while heart is loading
        events.append("pima served")
        assert [v.ref for v in catalog.served_versions()] == ["pima:1"]
        assert catalog.failures == {}
        events.append("heart released")
        registry.release.set()
        first.join()
        second.join()
        watchdog.cancel()
    assert events == ["pima served", "heart released"]
    assert pima.version.ref == "pima:1"
    assert len(heart) == 2 and heart[0] is heart[1]
    assert registry.loads == {"heart:1": 1, "pima:1": 1}

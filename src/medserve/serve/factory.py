"""The app as uvicorn's worker processes build it (``medserve serve --workers N``): each
worker reads the settings from its environment, the command's, and builds its own app on
the shared registry. uvicorn imports this by name (``medserve.serve.factory:worker_app``)."""

from __future__ import annotations

from typing import Any

from medserve.config import Settings


def worker_app() -> Any:
    """One worker's app, for ``uvicorn.run(..., factory=True)``."""
    from medserve.http.app import create_app

    return create_app(Settings())

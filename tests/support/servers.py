"""Helpers shared by HTTP tests: free ports, JSON records, registries, servers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import uvicorn

from medserve.config import Settings
from medserve.storage import Registry
from medserve.storage.profiles import ProfileStore


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def json_records(frame: pd.DataFrame) -> list[dict]:
    """Rows as a JSON client sends them: numbers as numbers, missing as null."""
    records = []
    for row in frame.to_dict(orient="records"):
        record = {}
        for column, value in row.items():
            if pd.isna(value):
                record[column] = None
            elif isinstance(value, str):
                try:
                    record[column] = float(value) if "." in value else int(value)
                except ValueError:
                    record[column] = {"TRUE": True, "FALSE": False}.get(value, value)
            else:
                record[column] = value
        records.append(record)
    return records


def copy_models(
    source: Settings,
    target: Settings,
    names: Collection[str] | None = None,
    change: Callable[[Any], None] | None = None,
) -> None:
    """Register the seed's models (those in ``names``, default all) anew in ``target``;
    ``change`` may alter each model (its schema, say) before it is stored."""
    with Registry(source) as seed, Registry(target) as registry:
        profiles, copied_profiles = ProfileStore(seed.engine), ProfileStore(registry.engine)
        for version in seed.list():
            if names is not None and version.name not in names:
                continue
            model = seed.load(version)
            if change is not None:
                change(model)
            copied = registry.register(
                version.name,
                model,
                family=version.family,
                schema=model.schema.model_dump(mode="json") if change else version.schema,
                metrics=version.metrics,
                threshold=version.threshold,
                params=version.params,
                lineage=version.lineage,
                data_sha256=version.data_sha256,
            )
            profile = profiles.get(version.name, version.version)
            if profile is not None:  # drift's reference, as training stored it
                copied_profiles.put(copied.name, copied.version, profile)


class ThreadServer:
    """uvicorn serving an app from a thread: a real socket, stopped by the test."""

    def __init__(self, app, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextmanager
def silent_server() -> Iterator[str]:
    """A FHIR base URL on a loopback socket that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/fhir"
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()

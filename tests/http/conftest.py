"""Fixtures for HTTP tests: a registry holding real trained models, API keys of every
role, and a real uvicorn server on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest

from medserve.config import Settings
from medserve.flows import TrainRequest, train_and_register
from medserve.http.app import create_app
from medserve.security.api_keys import ApiKeyStore
from support.servers import ThreadServer, copy_models, free_port, json_records

MODELS = {
    "heart": dict(target="num", positive_if=">0", family="logistic"),
    "pima": dict(target="Outcome", family="lightgbm"),
}


@pytest.fixture(scope="session")
def seed_home(tmp_path_factory, heart_csv, pima_csv) -> Settings:
    """Trained once per session; each test copies its models into a fresh registry."""
    settings = Settings(home=tmp_path_factory.mktemp("seed") / "home")
    for name, options in MODELS.items():
        data = heart_csv if name == "heart" else pima_csv
        train_and_register(settings, TrainRequest(data=data, name=name, cv=3, **options))
    return settings


@pytest.fixture(scope="session")
def heart_records(heart_csv) -> list[dict]:
    frame = pd.read_csv(heart_csv, dtype=str, keep_default_na=False, na_values=[""])
    return json_records(frame.drop(columns=["id", "num"]))


@dataclass
class Service:
    url: str
    settings: Settings
    app: object
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)

    def client(self, role: str | None = "predictor", **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)


StartService = Callable[..., Service]


@pytest.fixture
def start_service(tmp_path, seed_home) -> Iterator[StartService]:
    servers: list[ThreadServer] = []

    def start(database_url: str | None = None, **overrides) -> Service:
        settings = Settings(home=tmp_path / "home", database_url=database_url, **overrides)
        copy_models(seed_home, settings)
        app = create_app(settings)
        service = Service(url="", settings=settings, app=app)
        store = ApiKeyStore(app.state.registry.engine)
        for role in ("predictor", "trainer", "auditor", "admin"):
            key, token = store.create(role, name=f"test {role}")
            service.keys[role], service.key_ids[role] = token, key.id
        port = free_port()
        server = ThreadServer(app, port).__enter__()
        servers.append(server)
        service.url = f"http://127.0.0.1:{port}"
        return service

    yield start
    for server in servers:
        server.__exit__()


@dataclass
class Served:
    url: str
    app: object


@pytest.fixture
def serve_app() -> Iterator[Callable[[object], Served]]:
    """Serve an app the test built itself on a free port; stopped after the test."""
    servers: list[ThreadServer] = []

    def serve(app) -> Served:
        port = free_port()
        servers.append(ThreadServer(app, port).__enter__())
        return Served(url=f"http://127.0.0.1:{port}", app=app)

    yield serve
    for server in servers:
        server.__exit__()


@pytest.fixture
def service(start_service) -> Service:
    return start_service()


def home_path(service: Service) -> Path:
    return service.settings.home

"""Fixtures for HTTP tests: a registry holding real trained models, API keys of every
role, and the app they are served by: in this process by default (httpx.ASGITransport on
the app's one event loop), or behind a real uvicorn server on a free loopback port where
the test is about the server itself (concurrency, the event loop staying free)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import anyio.from_thread
import httpx
import pandas as pd
import pytest
from fastapi import FastAPI

from medserve.config import Settings
from medserve.flows import TrainRequest, train_and_register
from medserve.http.app import create_app
from medserve.security.api_keys import ApiKeyStore
from support.servers import ThreadServer, copy_models, free_port, json_records

MODELS = {
    "heart": dict(target="num", positive_if=">0", family="logistic"),
    "pima": dict(target="Outcome", family="lightgbm"),
}
ROLES = ("predictor", "trainer", "auditor", "admin", "outcomes")


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


class PortalTransport(httpx.BaseTransport):
    """httpx.ASGITransport for a synchronous httpx.Client: each request goes to the app on
    the event loop it was started on (an anyio blocking portal), as to a server process."""

    def __init__(self, app: FastAPI, portal: anyio.from_thread.BlockingPortal) -> None:
        self._asgi = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        self._portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # a streamed body becomes bytes, sent without a Content-Length

        async def send() -> tuple[int, httpx.Headers, bytes]:
            response = await self._asgi.handle_async_request(request)
            return response.status_code, response.headers, await response.aread()

        status, headers, content = self._portal.call(send)
        return httpx.Response(status, headers=headers, content=content, request=request)


class Running:
    """An app started as a server process starts it (lifespan startup), in this process;
    ``stop`` runs its shutdown (the audit writer writes everything, then closes)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._stack = ExitStack()
        self.portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())
        lifespan = app.router.lifespan_context(app)
        self._stack.enter_context(self.portal.wrap_async_context_manager(lifespan))

    def client(
        self, headers: dict[str, str], base_url: str = "http://testserver"
    ) -> httpx.Client:
        transport = PortalTransport(self.app, self.portal)
        return httpx.Client(transport=transport, base_url=base_url, headers=headers)

    def stop(self) -> None:
        self._stack.close()


@dataclass
class Service:
    """A service with one key per role; ``url`` is set when it runs behind a real server."""

    settings: Settings
    app: FastAPI
    running: Running | None = None
    url: str | None = None
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)

    def client(self, role: str | None = "predictor") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        if self.url is not None:
            return httpx.Client(base_url=self.url, headers=headers, timeout=60)
        assert self.running is not None
        return self.running.client(headers)


StartService = Callable[..., Service]


def add_keys(service: Service) -> Service:
    store = ApiKeyStore(service.app.state.registry.engine)
    for role in ROLES:
        key, token = store.create(role, name=f"test {role}")
        service.keys[role], service.key_ids[role] = token, key.id
    return service


ServeApp = Callable[..., Service]


def serving(stack: ExitStack) -> ServeApp:
    """Serve an app the test built itself, in process (default) or behind uvicorn on a free
    loopback port (``server=True``), with a new key per role; ``stack`` stops it, its
    lifespan run."""

    def serve(app: FastAPI, settings: Settings, *, server: bool = False) -> Service:
        service = Service(settings=settings, app=app)
        if server:
            port = free_port()
            stack.enter_context(ThreadServer(app, port))
            service.url = f"http://127.0.0.1:{port}"
        else:
            service.running = Running(app)
            stack.callback(service.running.stop)
        return add_keys(service)

    return serve


@pytest.fixture
def serve_app() -> Iterator[ServeApp]:
    with ExitStack() as stack:
        yield serving(stack)


@pytest.fixture(scope="module")
def serve_app_for_module() -> Iterator[ServeApp]:
    with ExitStack() as stack:
        yield serving(stack)


@pytest.fixture
def start_service(tmp_path, seed_home, serve_app) -> StartService:
    def start(
        database_url: str | None = None, *, server: bool = False, rate_limiter=None, **overrides
    ) -> Service:
        settings = Settings(home=tmp_path / "home", database_url=database_url, **overrides)
        copy_models(seed_home, settings)
        return serve_app(create_app(settings, rate_limiter=rate_limiter), settings, server=server)

    return start


@pytest.fixture
def service(start_service) -> Service:
    return start_service()


@pytest.fixture
def reported_service(tmp_path, seed_home, serve_app) -> Service:
    """The seed home copied whole (SQLite), so its models keep their reports."""
    settings = Settings(home=tmp_path / "home")
    shutil.copytree(seed_home.home, settings.home)
    return serve_app(create_app(settings), settings)


def home_path(service: Service) -> Path:
    return service.settings.home

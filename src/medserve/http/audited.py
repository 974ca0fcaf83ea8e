"""Which routes leave an audit record: those whose dependencies declare an AuditSubject.

Worked out once from the app's routes (through included routers, with the dependencies
an include adds), so the middleware asks a dictionary, not the route tree, per request.
A route is audited because it says so, wherever it lives: /v1/, /fhir/, /cds-services/."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute

from medserve.http.deps import audit_subject


def declares_audit_subject(dependant: Dependant | None) -> bool:
    """True when ``audit_subject`` is among the route's dependencies, at any depth."""
    if dependant is None:
        return False
    return dependant.call is audit_subject or any(
        declares_audit_subject(sub) for sub in dependant.dependencies
    )


class DeclaredRoutes:
    """The audited routes of one app: ``declared(scope['route'])``.

    ``routes`` is the app's own (live) list, read at the first request, when the app has
    all its routes: the middleware asks from the event loop, one request at a time."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = routes
        self._contexts: list[Any] | None = None
        self._declared: dict[int, tuple[BaseRoute, bool]] = {}

    def declared(self, route: object) -> bool:
        found = self._table().get(id(route))
        return found is not None and found[0] is route and found[1]

    def _table(self) -> dict[int, tuple[BaseRoute, bool]]:
        if self._contexts is None:
            # Every route as FastAPI resolves it: prefix and include-level dependencies.
            self._contexts = list(iter_route_contexts(self._routes))
            # Keyed by id; the value holds the route, so an id is never reused meanwhile.
            self._declared = {
                id(context.original_route): (
                    context.original_route,
                    declares_audit_subject(getattr(context, "dependant", None)),
                )
                for context in self._contexts
            }
        return self._declared

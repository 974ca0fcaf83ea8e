"""The dashboard's pages as HTML: Jinja2 templates under templates/ui, every value escaped
(autoescape on, undefined names an error), and its one stylesheet, served from the app.
No web framework here: http/routes/ui turns these into responses."""

from __future__ import annotations

from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

# The dashboard's own files, served under /ui/static/ (nothing is fetched from elsewhere).
STATIC_FILES = {
    "ui.css": "text/css; charset=utf-8",
    "whatif.js": "text/javascript; charset=utf-8",
}
# Scripts and styles only from the app itself; no inline script; framed only by itself.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-src 'self'; frame-ancestors 'self'; "
    "base-uri 'none'"
)

_environment = Environment(
    loader=PackageLoader("medserve.reporting", "templates/ui"),
    autoescape=select_autoescape(["html", "j2"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_page(template: str, **context: Any) -> str:
    """The page ``template`` (e.g. "models.html.j2") filled with ``context``."""
    return _environment.get_template(template).render(**context)


def static_file(name: str) -> tuple[bytes, str] | None:
    """The bytes and media type of the dashboard's static file ``name``; None for any
    other name (no path is ever built from the request)."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        return None
    return (resources.files("medserve.reporting").joinpath("static", name).read_bytes(),
            media_type)  # fmt: skip

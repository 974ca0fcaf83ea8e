"""Settings, read once at the edge (CLI entry point, app factory) and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where medserve keeps its state, and how it talks to its database."""

    model_config = SettingsConfigDict(env_prefix="MEDSERVE_", extra="ignore")

    home: Path = Field(default=Path(".medserve"), description="State directory.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata database; SQLite under home when unset.",
    )

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'medserve.db').resolve()}"

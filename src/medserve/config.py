"""Settings, read once at the edge (CLI entry point, app factory) and passed down."""

from __future__ import annotations

import bisect
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class BatchPolicy(BaseModel):
    """How a model's concurrent requests are coalesced into one scoring call: at most
    ``max_size`` records together (a larger request is scored alone, never split), and a
    request waits at most ``wait_ms`` for others to join it (see scoring/batching.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_size: int = Field(default=32, ge=1, le=100_000, description="Most records per batch.")
    wait_ms: float = Field(
        default=5.0, ge=0, le=60_000, description="Longest a request waits for others to join."
    )


class Settings(BaseSettings):
    """Where medserve keeps its state, and how it talks to its database."""

    model_config = SettingsConfigDict(
        env_prefix="MEDSERVE_", extra="ignore", env_parse_none_str="null"
    )

    home: Path = Field(default=Path(".medserve"), description="State directory.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata database; SQLite under home when unset.",
    )

    master_key: SecretStr | None = Field(
        default=None,
        description="Base64 of a 32-byte master key (several, comma-separated, current first, "
        "while rotating); a key file under home is used when unset.",
    )
    max_records: int = Field(default=10_000, ge=1, description="Most records per request.")
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    risk_band_cuts: list[float] = Field(
        default=[0.1, 0.3], description="Upper bounds of each band but the last, ascending."
    )
    risk_band_labels: list[str] = Field(default=["low", "moderate", "high"])
    rate_limit_per_minute: int = Field(
        default=60_000, ge=0, description="Requests per API key per minute; 0 = unlimited."
    )
    unauthenticated_per_minute: int = Field(
        default=60,
        ge=0,
        description="Requests without a valid API key answered per client address per minute "
        "(401, 400); past it, 429. 0 = unlimited.",
    )
    key_cache_s: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="Seconds the server trusts an API key it has just looked up before it "
        "looks it up again (a revoked key is refused at most this long after revocation); "
        "0 = look every key up on every request.",
    )
    serve_stage: str = Field(default="production", description="Stage served by default.")
    batching: dict[str, BatchPolicy | None] = Field(
        default_factory=dict,
        description="Dynamic batching per model name, as JSON: "
        '\'{"notes": {"max_size": 32, "wait_ms": 5}}\'; null turns it off for that model. '
        "Overrides batching_default.",
    )
    batching_default: BatchPolicy | None = Field(
        default_factory=BatchPolicy,
        description="Batching for models not named in `batching` whose scorer has no fast "
        "path (notes, EBM, imported models); null = none. Fast-path models are never "
        "batched unless named.",
    )

    def risk_bands(self, risks: list[float]) -> list[str]:
        """Each risk's band label ("low", "moderate", "high" by default)."""
        cuts, labels = self.risk_band_cuts, self.risk_band_labels
        return [labels[bisect.bisect_right(cuts, risk)] for risk in risks]

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def embeddings_dir(self) -> Path:
        """The notes encoder's cache of embeddings (encrypted; safe to delete)."""
        return self.home / "embeddings"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'medserve.db').resolve()}"

"""Settings, read once at the edge (CLI entry point, app factory) and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from medserve.core.risk import RiskBands


class BatchPolicy(BaseModel):
    """How a model's concurrent requests are coalesced into one scoring call: at most
    ``max_size`` records together (a larger request is scored alone, never split), and a
    request waits at most ``wait_ms`` for others to join it (see scoring/batching.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_size: int = Field(default=32, ge=1, le=100_000, description="Most records per batch.")
    wait_ms: float = Field(
        default=5.0, ge=0, le=60_000, description="Longest a request waits for others to join."
    )


class EhrIssuer(BaseModel):
    """How an EHR that calls the CDS Hooks service proves itself: its public keys, from a
    JWKS file, or fetched from a ``jku`` its token names that is on ``jku`` (exact URLs);
    and the FHIR servers medserve may fetch a patient's record from for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jwks_file: Path | None = Field(default=None, description="A JWKS (JSON) of its keys.")
    jku: list[str] = Field(default_factory=list, description="JWKS URLs it may name.")
    fhir_servers: list[str] = Field(
        default_factory=list,
        description="FHIR base URLs its calls may name as fhirServer for medserve to fetch "
        "from (exact, without a trailing slash); none: only prefetch is used.",
    )

    def fetches_from(self, fhir_server: str) -> bool:
        """True when medserve may fetch from ``fhir_server`` for this EHR."""
        wanted = fhir_server.rstrip("/")
        return any(wanted == allowed.rstrip("/") for allowed in self.fhir_servers)


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
    risk_band_cuts: list[float] | None = Field(
        default=None,
        description="Upper bounds of each band but the last, ascending, for every model not "
        "named in `model_risk_bands`; unset: each model's own, half its threshold and its "
        "threshold (so 'high' is exactly label 1).",
    )
    risk_band_labels: list[str] = Field(default=["low", "moderate", "high"])
    model_risk_bands: dict[str, list[float]] = Field(
        default_factory=dict,
        description="Band cuts per model name, as JSON: '{\"heart\": [0.2, 0.5]}'.",
    )
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
    fhir_server_url: str | None = Field(
        default=None,
        description="Base URL of the FHIR R4 server /v1/models/{name}/fhir/Patient/{id} "
        "reads from; unset: that route answers 400.",
    )
    fhir_server_token: SecretStr | None = Field(
        default=None, description="Bearer token medserve sends to fhir_server_url."
    )
    fhir_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Longest wait for the FHIR server per call."
    )
    fhir_site: str = Field(
        default="default", description="Whose FHIR binding this service uses (per site)."
    )
    cds_issuers: dict[str, EhrIssuer] = Field(
        default_factory=dict,
        description="EHRs trusted to call the CDS Hooks service, by their JWT `iss`, as JSON: "
        '\'{"https://ehr.example.org": {"jwks_file": "/etc/medserve/ehr-jwks.json"}}\'.',
    )
    cds_sandbox: bool = Field(
        default=False,
        description="DEVELOPMENT ONLY: also trust the public CDS Hooks sandbox's issuer "
        "(anyone can sign as it). Logged loudly at start.",
    )
    cds_clock_skew_s: float = Field(
        default=60.0, ge=0, le=600, description="Clock skew allowed on a token's exp and iat."
    )
    public_url: str | None = Field(
        default=None,
        description="The base URL EHRs call this service at (behind a proxy), e.g. "
        "https://cds.example.org; a token's `aud` must be this plus the path. Unset: the URL "
        "the request was sent to.",
    )
    prediction_log: bool = Field(
        default=True,
        description="Log every prediction (id, time, model, version, risk, label, band, "
        "channel; never a feature value) and count drift windows; off: no monitoring.",
    )
    prediction_retention_days: int = Field(
        default=365,
        ge=1,
        le=36_500,
        description="Days the prediction log, its outcomes and drift windows are kept; "
        "`medserve predictions purge` removes older ones.",
    )
    monitor_window_s: int = Field(
        default=86_400,
        ge=60,
        description="Length of one monitoring window (drift counts, live performance), in "
        "seconds; default one day.",
    )
    monitor_min_n: int = Field(
        default=10,
        ge=1,
        description="Windows with fewer predictions (or outcomes) than this are shown as "
        "suppressed, never as numbers.",
    )
    monitor_psi_alert: float = Field(
        default=0.25, gt=0, description="PSI at or above which a feature's shift alerts."
    )
    monitor_missing_alert: float = Field(
        default=0.10,
        gt=0,
        le=1,
        description="Change in a feature's share missing (absolute) that alerts.",
    )
    monitor_unseen_alert: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Share of a window's values that are levels never seen in training "
        "that alerts.",
    )
    monitor_webhook_url: str | None = Field(
        default=None,
        description="Where drift alerts are POSTed as JSON (aggregates only), e.g. a chat "
        "or paging webhook; unset: alerts go to the log and the gauges only.",
    )
    ui_session_s: int = Field(
        default=8 * 3600,
        ge=60,
        le=7 * 86_400,
        description="How long a dashboard session lasts after sign-in, in seconds (8 h).",
    )
    shared_state_url: SecretStr | None = Field(
        default=None,
        description="Redis URL (redis://host:6379/0) holding the request limits that "
        "replicas share; unset: each process counts its own. Required by "
        "`medserve serve --engine ray` and by `--workers` above 1.",
    )
    ray_address: str | None = Field(
        default=None,
        description="The Ray cluster to join (`auto`, or ray://head:10001); unset: a local "
        "Ray started for the command with ray_num_cpus CPUs.",
    )
    ray_num_cpus: int | None = Field(
        default=None,
        ge=1,
        description="CPUs of the local Ray a command starts; unset: every CPU of the machine.",
    )
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

    @model_validator(mode="after")
    def _bands_fit(self) -> Settings:
        if self.risk_band_cuts is None and len(self.risk_band_labels) != 3:
            raise ValueError(
                f"risk_band_labels: {len(self.risk_band_labels)} labels, but bands derived "
                "from a model's threshold are three (below half of it, up to it, above); "
                "set risk_band_cuts for more or fewer"
            )
        for name, cuts in [("", self.risk_band_cuts), *self.model_risk_bands.items()]:
            if cuts is not None:
                where = f"model_risk_bands['{name}']" if name else "risk_band_cuts"
                try:
                    RiskBands(tuple(cuts), tuple(self.risk_band_labels))
                except ValueError as error:
                    raise ValueError(f"{where}: {error}") from None
        return self

    def bands_for(self, model: str | None, threshold: float) -> RiskBands:
        """The bands of ``model``'s risks: its own when configured, else the service's
        cuts when set, else derived from its threshold."""
        labels = tuple(self.risk_band_labels)
        cuts = self.model_risk_bands.get(model or "") or self.risk_band_cuts
        if cuts is not None:
            return RiskBands(tuple(cuts), labels)
        return RiskBands.around(threshold, labels)

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

"""The app factory: one FastAPI app per Settings, everything it needs opened up front so
a broken registry stops the start instead of serving nothing silently."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI

from medserve import __version__
from medserve.config import Settings
from medserve.flows.clinical import PSEUDONYM_PURPOSE, Bindings, PatientPseudonyms
from medserve.flows.monitor import SUBJECT_PURPOSE, SubjectPseudonyms, thresholds
from medserve.http.admission import CredentialsBeforeBody
from medserve.http.audited import DeclaredRoutes
from medserve.http.deps import Clinical, Scoring
from medserve.http.observability import RequestBookkeeping, ServiceMetrics
from medserve.http.problems import install_problem_handlers
from medserve.http.routes import (
    cds_hooks,
    fhir,
    health,
    metadata,
    metrics,
    models,
    monitoring,
    predict,
    report,
)
from medserve.http.routes.ui import audit as ui_audit  # noqa: F401 (its routes join the router)
from medserve.http.routes.ui import keys as ui_keys  # noqa: F401 (likewise, each of these)
from medserve.http.routes.ui import models as ui_models  # noqa: F401
from medserve.http.routes.ui import monitoring as ui_monitoring  # noqa: F401
from medserve.http.routes.ui import pages as ui_pages
from medserve.http.routes.ui import session as ui_session  # noqa: F401
from medserve.http.routes.ui import whatif as ui_whatif  # noqa: F401
from medserve.interop.fhir.client import FhirClient
from medserve.monitoring.alerts import DriftWatch
from medserve.monitoring.recorder import PredictionRecorder
from medserve.monitoring.shadow_versions import ShadowVersions
from medserve.scoring.batching import Batchers
from medserve.scoring.catalog import ModelCatalog
from medserve.scoring.predictor import Predictor
from medserve.security.api_keys import ApiKeyStore
from medserve.security.audit import AuditLog, AuditWriter
from medserve.security.ehr_jwt import EhrTokenVerifier
from medserve.security.key_cache import RecentKeys
from medserve.security.rate_limit import MemoryRateLimiter, RateLimiter
from medserve.security.sessions import UiSessions
from medserve.storage import Registry
from medserve.storage.bindings import BindingStore
from medserve.storage.cds_cards import CardLog
from medserve.storage.drift_counts import DriftCounts
from medserve.storage.keystore import KeyStore
from medserve.storage.predictions import PredictionLog
from medserve.storage.profiles import ProfileStore
from medserve.storage.shadows import ShadowStore
from medserve.storage.token_ids import TokenIds

log = logging.getLogger("medserve.http")
# Threads that look up API keys (one database query each; the pool has 5 + 10 connections).
KEY_LOOKUP_THREADS = 8
# Threads that verify EHR tokens (a database write for the jti; at times a key fetch):
# their own, so that no EHR token, forged or slow, holds up an API key's lookup.
EHR_VERIFY_THREADS = 4


def create_app(settings: Settings, rate_limiter: RateLimiter | None = None) -> FastAPI:
    """The service for ``settings``; ``rate_limiter`` defaults to this process's own
    (a shared one lets replicas count a key's requests together)."""
    registry = Registry(settings)
    keystore = KeyStore(settings)
    audit_writer = AuditWriter(AuditLog(registry.engine, keystore.purpose_key("audit")))
    catalog = ModelCatalog(registry, stage=settings.serve_stage)
    for failure in catalog.preload():
        log.error("model not served", extra={"fields": {"why": failure}})

    key_lookups = ThreadPoolExecutor(KEY_LOOKUP_THREADS, thread_name_prefix="medserve-keys")
    predictor = Predictor(settings.bands_for, settings.max_records)
    service_metrics = ServiceMetrics()
    batchers = Batchers(
        predictor,
        settings.batching,
        settings.batching_default,
        observe=lambda model, size: service_metrics.batch_records.labels(model).observe(size),
    )

    clinical = _clinical(settings, registry, keystore)
    recorder, drift_watch = _monitoring(settings, registry, catalog, predictor, service_metrics)
    ehr_tokens = EhrTokenVerifier(
        settings.cds_issuers,
        TokenIds(registry.engine),
        clock_skew_s=settings.cds_clock_skew_s,
        sandbox=settings.cds_sandbox,
    )
    ehr_verifications = ThreadPoolExecutor(EHR_VERIFY_THREADS, thread_name_prefix="medserve-ehr")
    if (settings.cds_issuers or settings.cds_sandbox) and not settings.public_url:
        log.warning(
            "MEDSERVE_PUBLIC_URL is unset: CDS Hooks calls are answered only from this "
            "machine, not through a proxy; set it to the URL EHRs call"
        )
    rate_limiter, unauthenticated_limiter = _limiters(settings, rate_limiter)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn has finished in-flight requests: answer any still queued for a batch,
        # write every audit record, then close.
        await batchers.close()
        if recorder is not None:
            recorder.close()  # every answer logged, its window counted
        if drift_watch is not None:
            drift_watch.close()
        key_lookups.shutdown()
        ehr_verifications.shutdown()
        if clinical.fhir_server is not None:
            clinical.fhir_server.close()
        audit_writer.close()
        registry.close()

    app = FastAPI(
        title="medserve",
        version=__version__,
        description="Clinical risk models as a service. Every route but /healthz and /readyz "
        "needs `Authorization: Bearer <API key>`; errors are RFC 9457 problem+json.",
        lifespan=lifespan,
        # The schema and docs sit behind a credential too (see routes/metadata.py).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # A slash redirect would echo the Host header in its Location: 404 instead.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.keys = ApiKeyStore(registry.engine)
    app.state.ui_sessions = UiSessions(registry.engine, app.state.keys, settings.ui_session_s)
    app.state.key_lookups = key_lookups
    app.state.recent_keys = RecentKeys(settings.key_cache_s)
    app.state.audit = audit_writer
    app.state.catalog = catalog
    app.state.predictor = predictor
    app.state.metrics = service_metrics
    app.state.batchers = batchers
    app.state.scoring = Scoring(
        catalog,
        predictor,
        service_metrics,
        recorder=recorder,
        subjects=SubjectPseudonyms(keystore.purpose_key(SUBJECT_PURPOSE)),
    )
    app.state.clinical = clinical
    app.state.ehr_tokens = ehr_tokens
    app.state.ehr_verifications = ehr_verifications
    app.state.unauthenticated_limiter = unauthenticated_limiter
    app.state.rate_limiter = rate_limiter
    install_problem_handlers(app)
    for router in (health.router, models.router, predict.router, metrics.router, metadata.router):
        app.include_router(router)
    app.include_router(report.router)
    app.include_router(fhir.router)
    app.include_router(cds_hooks.router)
    app.include_router(monitoring.router)
    app.include_router(ui_pages.router)  # the dashboard: ui.session and ui.models add to it
    # Inside RequestBookkeeping (added later, so outside): every refusal is counted there.
    app.add_middleware(
        CredentialsBeforeBody,
        routes=app.routes,
        open_paths=health.HEALTH_PATHS,
        keys=app.state.keys,
        key_lookups=key_lookups,
        key_limiter=rate_limiter,
        address_limiter=unauthenticated_limiter,
        recent_keys=app.state.recent_keys,
        max_body_bytes=settings.max_body_bytes,
        audit=lambda: app.state.audit,
        sessions=app.state.ui_sessions,
    )
    app.add_middleware(
        RequestBookkeeping,
        metrics=app.state.metrics,
        audit=lambda: app.state.audit,
        audited=DeclaredRoutes(app.routes),
        max_body_bytes=settings.max_body_bytes,
    )
    return app


def _limiters(
    settings: Settings, rate_limiter: RateLimiter | None
) -> tuple[RateLimiter, RateLimiter]:
    """The per-key limit (``rate_limiter`` when given) and the per-address limit for
    requests without a valid key: counted in Redis, with every replica, when
    ``shared_state_url`` is set; else in this process."""
    unauthenticated = {
        "counted": "requests without a valid API key",
        "per": "address",
    }
    if settings.shared_state_url is None:
        return (
            rate_limiter or MemoryRateLimiter(settings.rate_limit_per_minute),
            MemoryRateLimiter(settings.unauthenticated_per_minute, **unauthenticated),
        )
    from medserve.security.shared_rate_limit import RedisRateLimiter, redis_client

    client = redis_client(settings.shared_state_url.get_secret_value())
    return (
        rate_limiter or RedisRateLimiter(client, settings.rate_limit_per_minute, scope="key"),
        RedisRateLimiter(
            client, settings.unauthenticated_per_minute, scope="address", **unauthenticated
        ),
    )


def _clinical(settings: Settings, registry: Registry, keystore: KeyStore) -> Clinical:
    """The FHIR and CDS Hooks parts: bindings at this site, pseudonyms, cards, FHIR server."""
    server = None
    if settings.fhir_server_url:
        token = settings.fhir_server_token
        server = FhirClient(
            settings.fhir_server_url,
            token=token.get_secret_value() if token is not None else None,
            timeout_s=settings.fhir_timeout_s,
        )
    return Clinical(
        bindings=Bindings(BindingStore(registry.engine), settings.fhir_site),
        pseudonyms=PatientPseudonyms(keystore.purpose_key(PSEUDONYM_PURPOSE)),
        cards=CardLog(registry.engine),
        fhir_server=server,
    )


def _monitoring(
    settings: Settings,
    registry: Registry,
    catalog: ModelCatalog,
    predictor: Predictor,
    service_metrics: ServiceMetrics,
) -> tuple[PredictionRecorder | None, DriftWatch | None]:
    """The prediction log's recorder (drift windows, shadows) and its drift alerts; none
    when MEDSERVE_PREDICTION_LOG is off."""
    if not settings.prediction_log:
        return None, None
    engine = registry.engine
    watch = DriftWatch(
        thresholds(settings),
        settings.monitor_window_s,
        gauges=service_metrics.drift,
        webhook_url=settings.monitor_webhook_url,
    )
    recorder = PredictionRecorder(
        PredictionLog(engine),
        DriftCounts(engine),
        ProfileStore(engine),
        predictor,
        window_s=settings.monitor_window_s,
        shadow_for=ShadowVersions(ShadowStore(engine), catalog),
        on_window=watch,
        on_shadow=lambda model, seconds: service_metrics.shadow_latency.labels(model).observe(
            seconds
        ),
    )
    service_metrics.predictions_unlogged.set_function(lambda: recorder.dropped + recorder.lost)
    return recorder, watch

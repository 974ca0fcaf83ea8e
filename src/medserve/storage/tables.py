"""Every table medserve keeps (SQLAlchemy 2.0 declarative), portable to SQLite and PostgreSQL:
model versions, API keys, the hash-chained audit trail, FHIR bindings, CDS Hooks cards
and their feedback, the EHR token ids already seen, and monitoring's tables: the
prediction log and its outcomes, reference profiles, windows of counts and shadows.

The schema itself is created and changed only by the Alembic migrations in
``migrations/versions``; these classes must stay in step with them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STAGES = ("candidate", "production", "archived")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back tz-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps stored in the registry must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class ModelVersionRow(Base):
    """One registered version of a named model."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
        CheckConstraint(
            "stage IN ('candidate', 'production', 'archived')", name="ck_model_versions_stage"
        ),
        # At most one production version per name, enforced by the database itself.
        Index(
            "uq_model_versions_one_production",
            "name",
            unique=True,
            sqlite_where=text("stage = 'production'"),
            postgresql_where=text("stage = 'production'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(16))
    family: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(255))
    artifact_id: Mapped[str] = mapped_column(String(32))
    artifact_path: Mapped[str] = mapped_column(String(512))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    data_sha256: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[float] = mapped_column(Float)
    schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON)
    report_path: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # HMAC binding the row to its artifact (storage/integrity.py); NULL only in rows an
    # older medserve stored, until they are sealed.
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


ROLE_CHECK = "role IN ('predictor', 'trainer', 'auditor', 'admin', 'outcomes')"
HEAD_ID = 1


class ApiKeyRow(Base):
    """An API key: public id, role, and the SHA-256 of its token (never the token)."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(ROLE_CHECK, name="ck_api_keys_role"),)

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    role: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditRecordRow(Base):
    """One audited request. Who, when, which route and model, how many rows, what outcome:
    never feature values or patient identifiers."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    # Assigned by AuditLog under the audit write lock (last seq + 1), not by a
    # database sequence: it is part of the hashed record, so it must be known
    # before the insert, and it stays gap-free even when a transaction rolls back.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    key_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    route: Mapped[str] = mapped_column(String(512))
    method: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    n_records: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str] = mapped_column(String(64))
    client: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # FHIR and CDS Hooks calls: the keyed pseudonym of the patient (never the id), and
    # the issuer of the EHR's token. Hashed only when set, so older records still verify.
    patient: Mapped[str | None] = mapped_column(String(64), nullable=True)
    issuer: Mapped[str | None] = mapped_column(String(255), nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The single row (id 1) naming the newest audit record, MACed: it makes deleting
    records at the end of the chain detectable."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint(f"id = {HEAD_ID}", name="ck_audit_head_single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class FhirBindingRow(Base):
    """Where one model version reads its features in FHIR, at one site (binding.py)."""

    __tablename__ = "fhir_bindings"
    __table_args__ = (
        UniqueConstraint("name", "version", "site", name="uq_fhir_bindings_version_site"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(255))


class CdsCardRow(Base):
    """A card a CDS Hooks call returned: which model said what (no patient, no values),
    so that feedback on it can be set against its prediction."""

    __tablename__ = "cds_cards"

    uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[int] = mapped_column(Integer)
    risk: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(32))
    # The EHR whose call the card answered: only it may say what became of the card.
    issuer: Mapped[str] = mapped_column(String(255))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CdsFeedbackRow(Base):
    """What the clinician did with a card: accepted or overridden, with the reason codes
    (a free-text comment is never stored)."""

    __tablename__ = "cds_feedback"
    __table_args__ = (
        CheckConstraint("outcome IN ('accepted', 'overridden')", name="ck_cds_feedback_outcome"),
        UniqueConstraint(
            "card_uuid", "outcome", "outcome_at", name="uq_cds_feedback_card_outcome_time"
        ),
        Index("ix_cds_feedback_card", "card_uuid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    card_uuid: Mapped[str] = mapped_column(String(64))
    service_id: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    outcome_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EhrTokenIdRow(Base):
    """A ``jti`` an EHR's token carried, kept until the token expires: a second use is a
    replay. In the shared database, so every replica refuses it."""

    __tablename__ = "ehr_token_ids"
    __table_args__ = (Index("ix_ehr_token_ids_expires", "expires_at"),)

    issuer: Mapped[str] = mapped_column(String(255), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PredictionRow(Base):
    """One scored prediction, as monitoring reads it: who answered (model, version, and
    whether it was the served answer or a shadow's), when, through which channel, and
    what it said. Never a feature value or a raw identifier: ``subject`` is a keyed
    pseudonym of an id the caller chose to send."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("prediction_id", "shadow", name="uq_predictions_id_shadow"),
        Index("ix_predictions_model_made", "model", "made_at"),
        Index("ix_predictions_subject", "model", "subject", "made_at"),
        Index("ix_predictions_made", "made_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[int] = mapped_column(Integer)
    # A shadow's risk for the same patient: logged, never answered.
    shadow: Mapped[bool] = mapped_column(Boolean)
    made_at: Mapped[datetime] = mapped_column(UTCDateTime())
    channel: Mapped[str] = mapped_column(String(16))
    risk: Mapped[float] = mapped_column(Float)
    label: Mapped[int] = mapped_column(Integer)
    band: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(64), nullable=True)


class OutcomeRow(Base):
    """The observed outcome of one earlier prediction (0 or 1), once."""

    __tablename__ = "prediction_outcomes"
    __table_args__ = (
        CheckConstraint("outcome IN (0, 1)", name="ck_prediction_outcomes_outcome"),
        Index("ix_prediction_outcomes_model", "model"),
    )

    prediction_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[int] = mapped_column(Integer)
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReferenceProfileRow(Base):
    """A version's training data as drift compares against it: per feature its bins or
    levels and missingness, and its predicted-risk distribution. Aggregates only."""

    __tablename__ = "reference_profiles"

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DriftCountRow(Base):
    """One process's counts of what a version scored in one window, in its reference
    profile's binning (cumulative, replaced on each write; windows sum the writers)."""

    __tablename__ = "drift_counts"
    __table_args__ = (Index("ix_drift_counts_model_window", "model", "window_start"),)

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    writer: Mapped[str] = mapped_column(String(32), primary_key=True)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ShadowRow(Base):
    """The candidate version scored silently beside a name's production version."""

    __tablename__ = "model_shadows"

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer)
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    set_by: Mapped[str] = mapped_column(String(255))


class UiSessionRow(Base):
    """A dashboard session: the sha256 of its cookie's token (never the token), the API
    key it was opened with, its CSRF token, and when it ends."""

    __tablename__ = "ui_sessions"
    __table_args__ = (Index("ix_ui_sessions_expires", "expires_at"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

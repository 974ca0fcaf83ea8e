"""The service's tables: API keys and the hash-chained audit trail.

Declared on the registry's ``Base`` so one database (and one Alembic history)
holds everything; the schema is created by migration 0002 and these classes
must stay in step with it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from medserve.registry.tables import Base, UTCDateTime

ROLE_CHECK = "role IN ('predictor', 'trainer', 'auditor', 'admin')"
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

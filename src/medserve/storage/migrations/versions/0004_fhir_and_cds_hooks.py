"""FHIR bindings, CDS Hooks cards and their feedback, EHR token ids seen, and the audit
trail's patient pseudonym and token issuer.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "fhir_bindings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.UniqueConstraint("name", "version", "site", name="uq_fhir_bindings_version_site"),
    )
    op.create_table(
        "cds_cards",
        sa.Column("uuid", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("risk", sa.Float(), nullable=False),
        sa.Column("band", sa.String(32), nullable=False),
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('accepted', 'overridden')", name="ck_cds_feedback_outcome"
        ),
        sa.UniqueConstraint(
            "card_uuid", "outcome", "outcome_at", name="uq_cds_feedback_card_outcome_time"
        ),
    )
    op.create_index("ix_cds_feedback_card", "cds_feedback", ["card_uuid"])
    op.create_table(
        "ehr_token_ids",
        sa.Column("issuer", sa.String(255), primary_key=True),
        sa.Column("jti", sa.String(255), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ehr_token_ids_expires", "ehr_token_ids", ["expires_at"])
    op.add_column("audit_log", sa.Column("patient", sa.String(64), nullable=True))
    op.add_column("audit_log", sa.Column("issuer", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("issuer")
        batch.drop_column("patient")
    op.drop_index("ix_ehr_token_ids_expires", "ehr_token_ids")
    op.drop_table("ehr_token_ids")
    op.drop_index("ix_cds_feedback_card", "cds_feedback")
    op.drop_table("cds_feedback")
    op.drop_table("cds_cards")
    op.drop_table("fhir_bindings")

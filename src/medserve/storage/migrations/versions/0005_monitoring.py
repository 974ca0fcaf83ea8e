"""Monitoring: the prediction log and its outcomes, reference profiles, windows of counts
for drift, and shadow versions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


OLD_ROLES = "role IN ('predictor', 'trainer', 'auditor', 'admin')"
NEW_ROLES = "role IN ('predictor', 'trainer', 'auditor', 'admin', 'outcomes')"


def _role_check(check: str) -> None:
    """Replace api_keys' role check (on SQLite by rebuilding the table: batch mode)."""
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("ck_api_keys_role", type_="check")
        batch.create_check_constraint("ck_api_keys_role", check)


def upgrade() -> None:
    _role_check(NEW_ROLES)
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("shadow", sa.Boolean(), nullable=False),
        sa.Column("made_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("risk", sa.Float(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("band", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(64), nullable=True),
        sa.UniqueConstraint("prediction_id", "shadow", name="uq_predictions_id_shadow"),
    )
    op.create_index("ix_predictions_model_made", "predictions", ["model", "made_at"])
    op.create_index("ix_predictions_subject", "predictions", ["model", "subject", "made_at"])
    op.create_index("ix_predictions_made", "predictions", ["made_at"])
    op.create_table(
        "prediction_outcomes",
        sa.Column("prediction_id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("outcome", sa.Integer(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("outcome IN (0, 1)", name="ck_prediction_outcomes_outcome"),
    )
    op.create_index("ix_prediction_outcomes_model", "prediction_outcomes", ["model"])
    op.create_table(
        "reference_profiles",
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("model_version", sa.Integer(), primary_key=True),
        sa.Column("profile", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "drift_counts",
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("model_version", sa.Integer(), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("writer", sa.String(32), primary_key=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_drift_counts_model_window", "drift_counts", ["model", "window_start"])
    op.create_table(
        "model_shadows",
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.String(255), nullable=False),
    )


def downgrade() -> None:
    # 0004 knows no `outcomes` role: its keys go (they could not be used there).
    op.execute("DELETE FROM api_keys WHERE role = 'outcomes'")
    _role_check(OLD_ROLES)
    op.drop_table("model_shadows")
    op.drop_index("ix_drift_counts_model_window", "drift_counts")
    op.drop_table("drift_counts")
    op.drop_table("reference_profiles")
    op.drop_index("ix_prediction_outcomes_model", "prediction_outcomes")
    op.drop_table("prediction_outcomes")
    op.drop_index("ix_predictions_made", "predictions")
    op.drop_index("ix_predictions_subject", "predictions")
    op.drop_index("ix_predictions_model_made", "predictions")
    op.drop_table("predictions")

"""Add model_versions.mac: the HMAC that binds a row to its artifact.

Rows already stored keep NULL until ``medserve.storage.integrity.seal_all`` seals them
(when the registry's purpose key is first made).

Revision ID: 0003
Revises: 0002
Create Date: 2025-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("model_versions", sa.Column("mac", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("mac")

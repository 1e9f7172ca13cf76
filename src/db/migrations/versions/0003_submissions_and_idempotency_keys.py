"""submissions and idempotency_keys: a POST can be followed, and retried without duplicates.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Two new tables only: `items` and `predictions` are not touched, so the upgrade is quick
at any history. Items stored before it belong to no submission.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one (as in tables.py).
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "submissions",
        sa.Column("id", Id, primary_key=True, autoincrement=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        mysql_engine="InnoDB",
    )
    op.create_index("ix_submissions_completed_at", "submissions", ["completed_at"])
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("submission_id", Id, nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        mysql_engine="InnoDB",
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("submissions")

"""items.scored and the index (scored, id): claims and pages read only what they return.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

The backfill marks every item that has a predictions row. It runs before the index is
built, so the index is built once over the final values instead of updated row by row.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "items",
        sa.Column(
            "scored",
            sa.Boolean(create_constraint=False),
            nullable=False,
            server_default=sa.text("0"),
        ),
    )
    if op.get_context().dialect.name in ("mysql", "mariadb"):
        # A join: MySQL runs `WHERE id IN (SELECT ...)` of an UPDATE as a dependent subquery.
        op.execute(
            "UPDATE items JOIN predictions ON predictions.item_id = items.id SET items.scored = 1"
        )
    else:
        op.execute("UPDATE items SET scored = 1 WHERE id IN (SELECT item_id FROM predictions)")
    op.create_index("ix_items_scored_id", "items", ["scored", "id"])


def downgrade() -> None:
    op.drop_index("ix_items_scored_id", table_name="items")
    # Not batch mode: SQLite would copy and drop `items`, and the drop cascades to predictions.
    op.drop_column("items", "scored")

"""The tables of the release before migrations: items, predictions, id_blocks.

Revision ID: 0001
Revises:
Create Date: 2026-12-02

Exactly what that release's `create_tables()` made, so a database it created is stamped
at this revision (src/db/migrate.py) and upgraded from here, keeping its rows and ids.
Frozen: later changes go in later revisions, never here.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        *(
            sa.Column(name, sa.Double(), nullable=False)
            for name in ("sepal_length", "sepal_width", "petal_length", "petal_width")
        ),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
        mysql_engine="InnoDB",
    )
    op.create_table(
        "predictions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "item_id",
            Id,
            sa.ForeignKey("items.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        *(sa.Column(f"probability_{index}", sa.Double(), nullable=False) for index in range(3)),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
        mysql_engine="InnoDB",
    )
    id_blocks = op.create_table(
        "id_blocks",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("next_id", sa.BigInteger(), nullable=False),
        mysql_engine="InnoDB",
    )
    # The item id counter: the API reserves ids from this row.
    op.bulk_insert(id_blocks, [{"name": "items", "next_id": 1}])


def downgrade() -> None:
    op.drop_table("id_blocks")
    op.drop_table("predictions")
    op.drop_table("items")

"""Batch lineage: every prediction records the version of the model that made it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

`predictions.model_version` (an integer, NOT NULL, no default: every writer names its
version) and the index (model_version, item_id) that a rescoring run walks.

Existing predictions get version 1: before this revision the batch job scored with one
model file, which the model repository now holds as `iris/1/model.onnx` (or `<model>/1`
for another model set), so version 1 is the model that made them. A database scored with
a model the operator counts otherwise can be corrected by hand afterwards
(`UPDATE predictions SET model_version = N`) before a rescoring run.

Bounded memory and no client-side batching at any size: the rows are filled by the
server. MySQL/MariaDB add the column with DEFAULT 1 (an instant change on MySQL 8 and
MariaDB 10.3+: old rows read the value from the table's metadata), then drop the default
and build the index online; each step is its own statement, checked before it runs, so an
upgrade stopped half-way can be run again. SQLite rebuilds the table with one
INSERT ... SELECT inside the upgrade's transaction, as 0004 does, so the column carries no
default there either.

The downgrade drops the column and the index: the lineage is lost.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INDEX = "ix_predictions_model_version_item_id"
VERSION_OF_EXISTING_PREDICTIONS = 1


def _is_mysql() -> bool:
    return op.get_context().dialect.name in ("mysql", "mariadb")


def _upgrade_mysql() -> None:
    inspector = sa.inspect(op.get_bind())
    columns = {column["name"]: column for column in inspector.get_columns("predictions")}
    if "model_version" not in columns:
        op.add_column(
            "predictions",
            sa.Column(
                "model_version",
                sa.Integer(),
                nullable=False,
                server_default=sa.text(str(VERSION_OF_EXISTING_PREDICTIONS)),
            ),
        )
        columns["model_version"] = {"default": "1"}
    if columns["model_version"].get("default") is not None:
        op.alter_column(
            "predictions",
            "model_version",
            existing_type=sa.Integer(),
            existing_nullable=False,
            server_default=None,
        )
    if INDEX not in {index["name"] for index in inspector.get_indexes("predictions")}:
        op.create_index(INDEX, "predictions", ["model_version", "item_id"])


def _upgrade_sqlite() -> None:
    """A new predictions table filled by INSERT ... SELECT, swapped in by name."""
    op.create_table(
        "predictions_rebuilt",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "item_id",
            Id,
            sa.ForeignKey("items.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("probabilities", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
        sa.Column("model_version", sa.Integer(), nullable=False),
    )
    op.execute(
        "INSERT INTO predictions_rebuilt (id, item_id, probabilities, created_at, model_version) "
        f"SELECT id, item_id, probabilities, created_at, {VERSION_OF_EXISTING_PREDICTIONS} "
        "FROM predictions"
    )
    # Nothing references predictions, so dropping it cascades nowhere.
    op.execute("DROP TABLE predictions")
    op.execute("ALTER TABLE predictions_rebuilt RENAME TO predictions")
    op.create_index(INDEX, "predictions", ["model_version", "item_id"])


def upgrade() -> None:
    if _is_mysql():
        _upgrade_mysql()
    else:
        _upgrade_sqlite()


def downgrade() -> None:
    op.drop_index(INDEX, table_name="predictions")
    # Native on MySQL and on SQLite 3.35+ (which rewrites the table in place).
    op.execute("ALTER TABLE predictions DROP COLUMN model_version")

"""Rows of any width: items.data and predictions.probabilities as packed float64 blobs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

The four iris columns of `items` become one blob `data` (8 bytes per number, little-
endian float64), the three probability columns of `predictions` one blob
`probabilities`, so any model's rows fit one schema. `model_layout` records the width
and class count a database was filled for; an upgraded database that holds items is
recorded as 4 numbers and 3 classes, the only layout the schema could hold before.

Why blobs rather than a JSON text column: measured on this machine (docs/batch-api.md,
"Storage"), a blob is about as cheap to write as the JSON text, several times cheaper
to read back into the job's array, half its size for 17-digit numbers, and float64
keeps every number exactly as sent, which the API's GET returns.

Nothing is lost and no id changes: the values are copied exactly (float64 to float64),
ids are copied as they are, and the id_blocks counter is not touched.
Bounded memory at any size: SQLite rebuilds each table with one INSERT ... SELECT that
packs through a function registered on the connection (the upgrade is one transaction
there, as every SQLite upgrade); MySQL/MariaDB fill the new column in place, BATCH_ROWS
rows at a time through a temporary table and one UPDATE ... JOIN per batch, then drop
the old columns in one ALTER per table. A MySQL upgrade stopped half-way can be run again.

The downgrade exists for databases of 4 numbers and 3 classes only (the 0003 schema
cannot hold any other); for any other it stops with one line and changes nothing.
"""

import struct
from collections.abc import Callable, Iterable, Sequence

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
FEATURE_COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
PROBABILITY_COLUMNS = ("probability_0", "probability_1", "probability_2")
BATCH_ROWS = 10_000
PACK_FUNCTION = "migration_pack_float64"
UNPACK_FUNCTION = "migration_float64_at"


def _pack(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}d", *values)


def _float64_at(blob: bytes, index: int) -> float:
    return struct.unpack_from("<d", blob, 8 * index)[0]


def _is_mysql() -> bool:
    return op.get_context().dialect.name in ("mysql", "mariadb")


def _columns(table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(op.get_bind()).get_columns(table)}


def _items_table(name: str, payload: Sequence[sa.Column]) -> None:
    op.create_table(
        name,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        *payload,
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
        sa.Column(
            "scored",
            sa.Boolean(create_constraint=False),
            nullable=False,
            server_default=sa.text("0"),
        ),
        mysql_engine="InnoDB",
    )


def _predictions_table(name: str, items_name: str, payload: Sequence[sa.Column]) -> None:
    op.create_table(
        name,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "item_id",
            Id,
            sa.ForeignKey(f"{items_name}.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        *payload,
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
        mysql_engine="InnoDB",
    )


def _rebuild_sqlite(
    items_payload: Sequence[sa.Column],
    items_select: str,
    predictions_payload: Sequence[sa.Column],
    predictions_select: str,
) -> None:
    """New items and predictions tables filled by INSERT ... SELECT, swapped in by name.

    The old predictions go first and the new ones reference the new items, so no DROP
    cascades into rows that are kept (foreign keys are on); renaming the new items
    table rewrites that reference to `items`.
    """
    driver = op.get_bind().connection.driver_connection
    driver.create_function(PACK_FUNCTION, -1, _pack, deterministic=True)
    driver.create_function(UNPACK_FUNCTION, 2, _float64_at, deterministic=True)
    payload_names = [column.name for column in items_payload]
    _items_table("items_rebuilt", items_payload)
    op.execute(
        f"INSERT INTO items_rebuilt (id, {', '.join(payload_names)}, created_at, scored) "
        f"SELECT id, {items_select}, created_at, scored FROM items"
    )
    payload_names = [column.name for column in predictions_payload]
    _predictions_table("predictions_rebuilt", "items_rebuilt", predictions_payload)
    op.execute(
        f"INSERT INTO predictions_rebuilt (id, item_id, {', '.join(payload_names)}, created_at) "
        f"SELECT id, item_id, {predictions_select}, created_at FROM predictions"
    )
    op.execute("DROP TABLE predictions")
    op.execute("DROP TABLE items")
    op.execute("ALTER TABLE items_rebuilt RENAME TO items")
    op.execute("ALTER TABLE predictions_rebuilt RENAME TO predictions")
    op.create_index("ix_items_scored_id", "items", ["scored", "id"])


def _fill_mysql(
    table: str,
    source: Sequence[str],
    target: Sequence[sa.Column],
    convert: Callable[[Sequence], Iterable],
) -> None:
    """Set `target` from `source` on every row of `table`, BATCH_ROWS rows at a time.

    Each batch: a keyset read, one multi-row INSERT into a temporary table, one UPDATE
    ... JOIN (pymysql would send an executemany of UPDATEs as one statement per row).
    """
    connection = op.get_bind()
    staging = sa.Table(
        f"migration_0004_{table}",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=False),
        *(sa.Column(column.name, column.type, nullable=False) for column in target),
        prefixes=["TEMPORARY"],
    )
    staging.create(connection)
    names = [column.name for column in target]
    read = sa.text(
        f"SELECT id, {', '.join(source)} FROM {table} WHERE id > :after ORDER BY id LIMIT :n"
    )
    assignments = ", ".join(f"{table}.{name} = s.{name}" for name in names)
    update = sa.text(f"UPDATE {table} JOIN {staging.name} s ON s.id = {table}.id SET {assignments}")
    after = 0
    while rows := connection.execute(read, {"after": after, "n": BATCH_ROWS}).all():
        connection.execute(
            staging.insert(),
            [dict(zip(["id", *names], (row[0], *convert(row[1:])), strict=True)) for row in rows],
        )
        connection.execute(update)
        connection.execute(staging.delete())
        after = rows[-1][0]
    staging.drop(connection)


def _replace_columns_mysql(
    table: str,
    old: Sequence[str],
    new: Sequence[sa.Column],
    convert: Callable[[Sequence], Iterable],
) -> None:
    """`new` columns filled from `old` ones, then `old` dropped; resumable if stopped."""
    present = _columns(table)
    for column in new:
        if column.name not in present:
            op.add_column(table, sa.Column(column.name, column.type, nullable=True))
    if not set(old) <= present:
        return  # the old columns are gone: an earlier run finished this table
    _fill_mysql(table, old, new, convert)
    # One ALTER: the table is rebuilt once, not once per column.
    compiler = op.get_context().dialect.type_compiler_instance
    changes = [f"MODIFY {column.name} {compiler.process(column.type)} NOT NULL" for column in new]
    changes += [f"DROP COLUMN {name}" for name in old]
    op.execute(f"ALTER TABLE {table} {', '.join(changes)}")


def upgrade() -> None:
    if _is_mysql():
        _replace_columns_mysql(
            "items", FEATURE_COLUMNS, [sa.Column("data", sa.LargeBinary())], lambda v: [_pack(*v)]
        )
        _replace_columns_mysql(
            "predictions",
            PROBABILITY_COLUMNS,
            [sa.Column("probabilities", sa.LargeBinary())],
            lambda v: [_pack(*v)],
        )
    else:
        _rebuild_sqlite(
            [sa.Column("data", sa.LargeBinary(), nullable=False)],
            f"{PACK_FUNCTION}({', '.join(FEATURE_COLUMNS)})",
            [sa.Column("probabilities", sa.LargeBinary(), nullable=False)],
            f"{PACK_FUNCTION}({', '.join(PROBABILITY_COLUMNS)})",
        )
    if "model_layout" in sa.inspect(op.get_bind()).get_table_names():
        return
    layout = op.create_table(
        "model_layout",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("n_features", sa.Integer(), nullable=False),
        sa.Column("n_classes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
        mysql_engine="InnoDB",
    )
    holds_items = op.get_bind().execute(sa.text("SELECT 1 FROM items LIMIT 1")).first()
    if holds_items:
        op.bulk_insert(layout, [{"id": 1, "n_features": 4, "n_classes": 3}])


def require_downgradable(connection: sa.Connection) -> None:
    """SchemaError unless the database holds 4 numbers and 3 classes only.

    `src.db.migrate.downgrade` calls it before any step of a downgrade past this revision
    runs, so a refused downgrade changes nothing even where DDL commits at once (MySQL).
    """
    from src.db.migrate import SchemaError

    layout = connection.execute(
        sa.text("SELECT n_features, n_classes FROM model_layout WHERE id = 1")
    ).first()
    other_items = connection.execute(
        sa.text("SELECT COUNT(*) FROM items WHERE LENGTH(data) <> 32")
    ).scalar_one()
    other_predictions = connection.execute(
        sa.text("SELECT COUNT(*) FROM predictions WHERE LENGTH(probabilities) <> 24")
    ).scalar_one()
    if (layout is not None and tuple(layout) != (4, 3)) or other_items or other_predictions:
        found = f"{layout[0]} numbers and {layout[1]} classes" if layout else "other widths"
        raise SchemaError(
            f"cannot downgrade below 0004: the database holds rows of {found}, and revision "
            "0003 stores only 4 numbers and 3 classes per row"
        )


def downgrade() -> None:
    require_downgradable(op.get_bind())
    op.drop_table("model_layout")
    doubles = [sa.Column(name, sa.Double(), nullable=False) for name in FEATURE_COLUMNS]
    probabilities = [sa.Column(name, sa.Double(), nullable=False) for name in PROBABILITY_COLUMNS]
    if _is_mysql():
        unpack = lambda values: struct.unpack(f"<{len(values[0]) // 8}d", values[0])  # noqa: E731
        _replace_columns_mysql("items", ["data"], doubles, unpack)
        _replace_columns_mysql("predictions", ["probabilities"], probabilities, unpack)
        return
    _rebuild_sqlite(
        doubles,
        ", ".join(f"{UNPACK_FUNCTION}(data, {index})" for index in range(4)),
        probabilities,
        ", ".join(f"{UNPACK_FUNCTION}(probabilities, {index})" for index in range(3)),
    )

"""The tables of the release before migrations, and its `create_tables()`, kept verbatim.

Frozen here so the tests can make a database exactly as that release did (tables, no
alembic_version), then upgrade it. Copied from src/db/tables.py and src/db/engine.py at
commit 25dcd35; do not change it to follow the current schema.
"""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Double,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.schema import CreateTable

from src.db.engine import is_mysql, write_transaction

FEATURE_COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
PROBABILITY_COLUMNS = tuple(f"probability_{index}" for index in range(3))
ITEMS_SEQUENCE = "items"
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

items = Table(
    "items",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    *(Column(name, Double(), nullable=False) for name in FEATURE_COLUMNS),
    Column("created_at", DateTime(), nullable=False, server_default=func.now()),
    mysql_engine="InnoDB",
)

predictions = Table(
    "predictions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "item_id",
        Id,
        ForeignKey("items.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    *(Column(name, Double(), nullable=False) for name in PROBABILITY_COLUMNS),
    Column("created_at", DateTime(), nullable=False, server_default=func.now()),
    mysql_engine="InnoDB",
)

id_blocks = Table(
    "id_blocks",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("next_id", BigInteger(), nullable=False),
    mysql_engine="InnoDB",
)


def create_tables(engine: Engine) -> None:
    """What the API and the job ran at start-up before there were migrations."""
    with write_transaction(engine) as connection:
        for table in metadata.sorted_tables:
            connection.execute(CreateTable(table, if_not_exists=True))
        seed = insert(id_blocks).from_select(
            ["name", "next_id"],
            select(literal(ITEMS_SEQUENCE), func.coalesce(func.max(items.c.id), 0) + 1),
        )
        seed = seed.prefix_with("IGNORE" if is_mysql(connection) else "OR IGNORE")
        connection.execute(seed)

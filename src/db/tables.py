"""The batch pattern's tables (SQLAlchemy Core): items to score, and one prediction per item.

An item without a predictions row is unscored. `predictions.item_id` is unique, so even
a bug or a race between two jobs can never store a second prediction for one item.
"""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    func,
)

# The four iris measurements, in the order of a request row.
FEATURE_COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
# One probability per class, in the model's output order (label.json maps index -> name).
N_CLASSES = 3
PROBABILITY_COLUMNS = tuple(f"probability_{index}" for index in range(N_CLASSES))
ITEMS_SEQUENCE = "items"

# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
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
    # unique=True is also the index the job's anti-join and the API's lookups use.
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

# Hands out blocks of item ids, so one POST learns the ids of all its rows without
# INSERT ... RETURNING (which MySQL 8 lacks) and without trusting auto-increment values
# of a multi-row insert to be consecutive (they need not be under innodb_autoinc_lock_mode=2).
id_blocks = Table(
    "id_blocks",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("next_id", BigInteger(), nullable=False),
    mysql_engine="InnoDB",
)

"""The batch pattern's tables (SQLAlchemy Core): items to score, and one prediction per item.

`items.scored` is set in the transaction that stores the item's predictions row, so the
job's claims and the API's listings read the index (scored, id) and touch only the items
they return, however many are stored. `predictions.item_id` is unique, so even a bug or
a race between two jobs can never store a second prediction for one item.

A POST is one submission: its items are the consecutive ids from `submissions.id` (its
first item's id) on, so a submission's counts and pages are ranges of the indexes above.
`idempotency_keys.key` is the primary key: of two requests with one key, the database
lets exactly one insert it (src/db/submissions.py).

Rows of any width: an item's numbers and a prediction's probabilities are packed
float64 blobs (src/db/packing.py), so one schema holds any model's rows; `model_layout`
records the width and class count the database was filled for, and a process whose model
differs refuses to start (src/db/layout.py).

Lineage: `predictions.model_version` is the version of the model that made each
prediction; a rescoring run (src/db/rescoring.py) rewrites older ones, once per version.

This is the schema of the newest migration (src/db/migrations): a change here needs a
new revision too (tests/db/test_migrations.py compares the two).
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
    text,
)

ITEMS_SEQUENCE = "items"

# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

items = Table(
    "items",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # The request row's F numbers as sent (float64, little-endian): 8 * F bytes.
    Column("data", LargeBinary(), nullable=False),
    Column("created_at", DateTime(), nullable=False, server_default=func.now()),
    # False until the job stores the item's prediction (in the same transaction).
    Column("scored", Boolean(create_constraint=False), nullable=False, server_default=text("0")),
    # Leads with `scored`: a claim or a page of one state is a range scan of that state.
    Index("ix_items_scored_id", "scored", "id"),
    mysql_engine="InnoDB",
)

predictions = Table(
    "predictions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # unique=True is also the index the API's lookups by item use.
    Column(
        "item_id",
        Id,
        ForeignKey("items.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    # K probabilities in the model's output order (label.json maps index -> name).
    Column("probabilities", LargeBinary(), nullable=False),
    # When this prediction was made: stored, or rewritten by a rescoring run.
    Column("created_at", DateTime(), nullable=False, server_default=func.now()),
    # The version of the model that made it (MODEL_VERSION, or the repository's newest).
    # No default: every writer names its version.
    Column("model_version", Integer(), nullable=False),
    # A rescoring run walks one older version's predictions in item order: a range of this.
    Index("ix_predictions_model_version_item_id", "model_version", "item_id"),
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

# One row per POST /predict. Its items are the ids id .. id + item_count - 1 (one block of
# id_blocks), so no column on `items` is needed to find them.
submissions = Table(
    "submissions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=False),
    Column("item_count", Integer(), nullable=False),
    Column("created_at", DateTime(), nullable=False, server_default=func.now()),
    # Set by the job once every item is scored: when the last prediction was stored.
    Column("completed_at", DateTime(), nullable=True),
    # The job's completion step reads the NULLs, retention the oldest completed ones.
    Index("ix_submissions_completed_at", "completed_at"),
    mysql_engine="InnoDB",
)

# The answer to a POST with an Idempotency-Key: the key is the primary key, so two
# requests with one key (on any API replica) cannot both store their rows.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(255), primary_key=True),
    # SHA-256 (hex) of the request's rows: a replay must carry the same rows.
    Column("request_hash", String(64), nullable=False),
    Column("submission_id", Id, nullable=False),
    Column("item_count", Integer(), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("expires_at", DateTime(), nullable=False),
    Index("ix_idempotency_keys_expires_at", "expires_at"),
    mysql_engine="InnoDB",
)

# One row (id 1) once a process has served this database: the model's row width and
# class count. Stored rows of another width would be misread, so another model is refused.
model_layout = Table(
    "model_layout",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=False),
    Column("n_features", Integer(), nullable=False),
    Column("n_classes", Integer(), nullable=False),
    Column("created_at", DateTime(), nullable=False, server_default=func.now()),
    mysql_engine="InnoDB",
)

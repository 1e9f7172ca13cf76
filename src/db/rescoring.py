"""Rescoring: predictions made by an older model version are scored again, once per version.

A rescoring pass walks the predictions of each older version in item order, a range of
the index (model_version, item_id), chunk by chunk; each chunk is claimed, scored and
written in one transaction, as the job's scoring is. The write is conditional
(`WHERE item_id = ... AND model_version < :version`), so for one version an item's
prediction is rewritten at most once, whatever else runs: a second job, a re-run after a
SIGKILL (whose chunk in flight rolled back whole). What is counted is what the database
reports as written.

MySQL/MariaDB: the claim is FOR UPDATE SKIP LOCKED, so concurrent jobs split the work;
a chunk's new probabilities go into a temporary table and one UPDATE ... JOIN writes
them (an executemany of UPDATEs would cost pymysql one round trip per row). SQLite: the
chunk holds the write lock (BEGIN IMMEDIATE), and an executemany of UPDATEs is in-process.
"""

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    LargeBinary,
    MetaData,
    Row,
    Select,
    Table,
    bindparam,
    func,
    select,
    text,
    update,
)

from src.db.engine import is_mysql
from src.db.packing import pack_rows
from src.db.tables import items, predictions

VERSION_INDEX = "ix_predictions_model_version_item_id"
# A session's own table (MySQL): created once per connection, emptied before every chunk.
_chunk_table = Table(
    "rescored_chunk",
    MetaData(),
    Column("item_id", BigInteger(), primary_key=True, autoincrement=False),
    Column("probabilities", LargeBinary(), nullable=False),
    prefixes=["TEMPORARY"],
)
_CHUNK_TABLE_READY = "rescored_chunk_table"
_REWRITE_FROM_CHUNK_TABLE = text(
    "UPDATE rescored_chunk AS c STRAIGHT_JOIN predictions AS p ON p.item_id = c.item_id"
    " SET p.probabilities = c.probabilities, p.model_version = :version, p.created_at = NOW()"
    " WHERE p.model_version < :version"
)


@dataclass
class RescoreCursor:
    """Where a rescoring pass is, shared by the job's threads: the older version it walks
    (0: none chosen yet) and the last item id claimed of it."""

    target_version: int
    version: int = 0
    after_id: int = 0
    finished: bool = False
    # Rows claimed in this walk: a walk that claimed none has nothing left to do.
    claimed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _hinted(query):
    # Forced on MySQL/MariaDB, as the claims of items are (src/db/queries.py): with
    # ORDER BY item_id LIMIT n they may prefer the unique index on item_id, the whole history.
    hint = f"FORCE INDEX ({VERSION_INDEX})"
    return query.with_hint(predictions, hint, "mysql").with_hint(predictions, hint, "mariadb")


def _next_older_version(connection: Connection, cursor: RescoreCursor) -> int | None:
    """The lowest version above the cursor's and below the target (the index's first entry)."""
    return connection.execute(
        select(func.min(predictions.c.model_version)).where(
            predictions.c.model_version > cursor.version,
            predictions.c.model_version < cursor.target_version,
        )
    ).scalar_one()


def claim_query(version: int, after_id: int, limit: int) -> Select:
    """The SELECT of one claim (see `claim_older`), without its lock: the next `limit`
    items (id, data) whose prediction `version` made, after `after_id`.

    One statement with the items' rows: on MySQL/MariaDB (no FOR UPDATE OF) the lock takes
    them too, which only retention's deletes of old items would wait for.
    """
    return _hinted(
        select(items.c.id, items.c.data)
        .join_from(predictions, items, items.c.id == predictions.c.item_id)
        .where(predictions.c.model_version == version, predictions.c.item_id > after_id)
        .order_by(predictions.c.item_id)
        .limit(limit)
    )


def claim_older(connection: Connection, cursor: RescoreCursor, limit: int) -> list[Row]:
    """The next `limit` predictions of an older version (item_id, data), locked until the
    transaction ends; [] once every older version is walked.

    Call with `cursor.lock` held, so the threads of a pass never claim overlapping chunks.
    """
    while not cursor.finished:
        if cursor.version:
            query = claim_query(cursor.version, cursor.after_id, limit)
            if is_mysql(connection):
                query = query.with_for_update(skip_locked=True)
            rows = list(connection.execute(query))
            if rows:
                cursor.after_id = rows[-1].id
                cursor.claimed += len(rows)
                return rows
        # This version is walked (or none was chosen yet): on to the next older one.
        next_version = _next_older_version(connection, cursor)
        if next_version is None:
            cursor.finished = True
        else:
            cursor.version, cursor.after_id = next_version, 0
    return []


def rewrite_predictions(
    connection: Connection,
    item_ids: Sequence[int],
    probabilities: np.ndarray,
    model_version: int,
) -> int:
    """Replace the predictions of `item_ids` that are older than `model_version` by
    `probabilities`, made now by it; how many rows were written (the rest are left alone)."""
    if not item_ids:
        return 0
    packed = pack_rows(probabilities)
    if is_mysql(connection):
        return _rewrite_through_chunk_table(connection, item_ids, packed, model_version)
    statement = (
        update(predictions)
        .where(
            predictions.c.item_id == bindparam("b_item_id"),
            predictions.c.model_version < model_version,
        )
        .values(
            probabilities=bindparam("b_probabilities"),
            model_version=model_version,
            created_at=func.now(),
        )
    )
    result = connection.execute(
        statement,
        [
            {"b_item_id": item_id, "b_probabilities": blob}
            for item_id, blob in zip(item_ids, packed, strict=True)
        ],
    )
    return result.rowcount


def _rewrite_through_chunk_table(
    connection: Connection, item_ids: Sequence[int], packed: list[bytes], model_version: int
) -> int:
    # A temporary table outlives transactions (and is not rolled back with them): made once
    # per database connection, and emptied by the next chunk on it (invisible to others).
    if not connection.info.get(_CHUNK_TABLE_READY):
        _chunk_table.create(connection, checkfirst=False)
        connection.info[_CHUNK_TABLE_READY] = True
    else:
        connection.execute(_chunk_table.delete())
    # Written as literals (integers, and blobs as hex): pymysql escapes each bound blob in
    # Python, which made this INSERT five times slower than the UPDATE it feeds.
    connection.exec_driver_sql(
        f"INSERT INTO {_chunk_table.name} (item_id, probabilities) VALUES "
        + ",".join(
            f"({int(item_id)},x'{blob.hex()}')"
            for item_id, blob in zip(item_ids, packed, strict=True)
        )
    )
    # STRAIGHT_JOIN: from the chunk's rows to their predictions by item_id. Left to the
    # optimizer, the join may scan predictions instead, locking rows of other chunks in
    # flight (a deadlock, or rows another claim then skips). With CLIENT_FOUND_ROWS
    # (SQLAlchemy's default) the count is of rows matched, which the condition on
    # model_version makes exactly the rows written.
    return connection.execute(_REWRITE_FROM_CHUNK_TABLE, {"version": model_version}).rowcount


def count_older(engine: Engine, model_version: int) -> int:
    """Predictions of a version below `model_version`: a range of the index, costs its size."""
    with engine.connect() as connection:
        return connection.execute(
            select(func.count())
            .select_from(predictions)
            .where(predictions.c.model_version < model_version)
        ).scalar_one()

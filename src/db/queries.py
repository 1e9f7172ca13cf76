"""Plain functions over the batch tables: what the API and the job do to the database.

Every write is a bulk statement in one transaction: a 10,000-row POST is one INSERT of
10,000 rows, a chunk of scored items is one INSERT of a chunk of predictions.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import numpy as np
from sqlalchemy import Connection, Engine, Row, Select, false, func, insert, select, true, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from src.db.engine import is_mysql, write_transaction
from src.db.packing import pack_rows
from src.db.tables import ITEMS_SEQUENCE, id_blocks, items, predictions

# The URL words of the original pattern (`/data/predicted`, `/data/unpredicted`) for
# what the code calls scored and unscored items.
Scope = Literal["all", "predicted", "unpredicted"]
SCORED_INDEX = "ix_items_scored_id"


def _by_state(query: Select, scored: bool) -> Select:
    """`query` narrowed to scored (or unscored) items, read through the index (scored, id).

    Forced on MySQL/MariaDB: with ORDER BY id LIMIT n they prefer walking the primary
    key from the lowest id, which is the whole history when few items are unscored.
    """
    hint = f"FORCE INDEX ({SCORED_INDEX})"
    return (
        query.where(items.c.scored == (true() if scored else false()))
        .with_hint(items, hint, "mysql")
        .with_hint(items, hint, "mariadb")
    )


def _allocate_item_ids(engine: Engine, count: int) -> int:
    """Reserve `count` consecutive item ids; returns the first.

    Its own short transaction, so concurrent POSTs queue on the counter row only for
    the time of one UPDATE, not for their whole insert. A failed insert leaves a gap,
    as auto-increment does.
    """
    with write_transaction(engine) as connection:
        connection.execute(
            update(id_blocks)
            .where(id_blocks.c.name == ITEMS_SEQUENCE)
            .values(next_id=id_blocks.c.next_id + count)
        )
        next_id = connection.execute(
            select(id_blocks.c.next_id).where(id_blocks.c.name == ITEMS_SEQUENCE)
        ).scalar_one()
    return next_id - count


def item_values(first_id: int, rows: np.ndarray | Sequence[Sequence[float]]) -> list[dict]:
    """The items rows of `rows` (ids from `first_id` on), for one bulk INSERT."""
    return [{"id": first_id + index, "data": data} for index, data in enumerate(pack_rows(rows))]


def insert_items(engine: Engine, rows: np.ndarray | Sequence[Sequence[float]]) -> list[int]:
    """Store one unscored item per row, all in one transaction; returns their ids in order."""
    if len(rows) == 0:
        return []
    first_id = _allocate_item_ids(engine, len(rows))
    with write_transaction(engine) as connection:
        # A list of parameter sets is one executemany, which pymysql sends as multi-row INSERTs.
        connection.execute(insert(items), item_values(first_id, rows))
    return list(range(first_id, first_id + len(rows)))


def _items_with_predictions() -> Select:
    return select(
        items.c.id,
        items.c.data,
        items.c.created_at,
        predictions.c.item_id.label("scored_item_id"),
        predictions.c.probabilities,
        predictions.c.model_version,
    ).outerjoin_from(items, predictions, predictions.c.item_id == items.c.id)


def get_item(engine: Engine, item_id: int) -> Row | None:
    """One item with its probabilities (None in `scored_item_id` while unscored)."""
    with engine.connect() as connection:
        return connection.execute(
            _items_with_predictions().where(items.c.id == item_id)
        ).one_or_none()


def list_items(
    engine: Engine, scope: Scope, limit: int, after_id: int | None = None, offset: int = 0
) -> list[Row]:
    """One page of items in id order: keyset (`after_id`) and/or `offset`, at most `limit`.

    A page of one state reads the index (scored, id) from `after_id` on, so it costs its
    own rows (plus `offset`, which the API bounds), not the items stored before them.
    """
    with engine.connect() as connection:
        return list(connection.execute(page_query(scope, limit, after_id, offset)))


def page_query(scope: Scope, limit: int, after_id: int | None = None, offset: int = 0) -> Select:
    """The SELECT of one page (see `list_items`)."""
    query = _items_with_predictions().order_by(items.c.id).limit(limit).offset(offset)
    if after_id is not None:
        query = query.where(items.c.id > after_id)
    if scope == "all":
        return query
    return _by_state(query, scored=scope == "predicted")


def claim_unscored(
    connection: Connection, after_id: int, limit: int, last_id: int | None = None
) -> list[Row]:
    """The next `limit` unscored items after `after_id`, locked until the transaction ends.

    A range of the index (scored, id): the claim reads only the rows it returns, however
    many items are scored already. On MySQL/MariaDB, FOR UPDATE SKIP LOCKED: rows another
    job has claimed are skipped, not waited for, so concurrent jobs split the backlog.
    SQLite has no row locks; there the caller's BEGIN IMMEDIATE makes the whole chunk one
    writer's at a time.
    """
    query = claim_query(after_id, limit, last_id)
    if is_mysql(connection):
        query = query.with_for_update(skip_locked=True)
    return list(connection.execute(query))


def claim_query(after_id: int, limit: int, last_id: int | None = None) -> Select:
    """The SELECT of one claim (see `claim_unscored`), without its lock; up to `last_id`."""
    query = select(items.c.id, items.c.data)
    if last_id is not None:
        query = query.where(items.c.id <= last_id)
    query = _by_state(query.where(items.c.id > after_id), scored=False)
    return query.order_by(items.c.id).limit(limit)


def backlog_query() -> Select:
    return _by_state(select(func.count()).select_from(items), scored=False)


def insert_predictions(
    connection: Connection,
    item_ids: Sequence[int],
    probabilities: np.ndarray,
    model_version: int,
) -> None:
    """Store one predictions row per item, made by `model_version`, and mark the items
    scored, in the caller's transaction.

    A row whose item already has a prediction is left alone: the claim makes that
    impossible in normal operation, and the unique item_id keeps it exactly once regardless.
    """
    if not item_ids:
        return
    values = [
        {"item_id": item_id, "probabilities": packed, "model_version": model_version}
        for item_id, packed in zip(item_ids, pack_rows(probabilities), strict=True)
    ]
    if is_mysql(connection):
        statement = mysql_insert(predictions).on_duplicate_key_update(item_id=predictions.c.item_id)
    else:
        statement = sqlite_insert(predictions).on_conflict_do_nothing(index_elements=["item_id"])
    connection.execute(statement, values)
    # The same transaction: an item is scored exactly when its predictions row exists.
    connection.execute(update(items).where(items.c.id.in_(item_ids)).values(scored=True))


def last_item_id(engine: Engine) -> int:
    """The highest item id stored (0: none), read from the end of the primary key."""
    with engine.connect() as connection:
        return connection.execute(select(func.max(items.c.id))).scalar_one() or 0


def count_backlog(engine: Engine) -> int:
    """Unscored items, counted in the index (scored, id): costs the backlog, not the history."""
    with engine.connect() as connection:
        return connection.execute(backlog_query()).scalar_one()


def database_now(connection: Connection) -> datetime:
    """The database's clock, which stamps `created_at`: every process compares against it."""
    return connection.execute(select(func.now())).scalar_one().replace(microsecond=0)


def oldest_unscored_age_seconds(engine: Engine) -> float:
    """Age of the oldest unscored item (0 when none): the first entry of the index range."""
    with engine.connect() as connection:
        created_at = connection.execute(
            _by_state(select(items.c.created_at), scored=False).order_by(items.c.id).limit(1)
        ).scalar_one_or_none()
        if created_at is None:
            return 0.0
        return max((database_now(connection) - created_at).total_seconds(), 0.0)

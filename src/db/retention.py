"""Retention: delete scored items, their predictions and spent submissions and keys.

The job runs `sweep` between passes. Every deletion is a chunk of at most `chunk` rows in
a transaction of its own, so no lock is held for longer than one chunk's DELETE: the API's
inserts and other jobs' claims wait at most that long. Unscored items are never deleted.
"""

import threading
from dataclasses import dataclass, fields
from datetime import timedelta

from sqlalchemy import Engine, delete, select, true

from src.db.engine import write_transaction
from src.db.queries import _by_state, database_now
from src.db.submissions import _in_submission, mark_completed
from src.db.tables import idempotency_keys, items, predictions, submissions

CHUNK_ROWS = 1000


@dataclass
class Swept:
    """Rows deleted by one sweep, per table."""

    items: int = 0
    predictions: int = 0
    submissions: int = 0
    idempotency_keys: int = 0

    def as_dict(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def _delete_old_items(engine: Engine, cutoff, chunk: int, swept: Swept, stop) -> None:
    """Scored items created before `cutoff`, oldest ids first, and their predictions.

    Ids grow with time, so the walk of the index (scored, id) stops at the first scored
    item that is not old yet: a sweep costs what it deletes plus one chunk.
    """
    after_id = 0
    while not stop.is_set():
        with write_transaction(engine) as connection:
            rows = connection.execute(
                _by_state(select(items.c.id, items.c.created_at), scored=True)
                .where(items.c.id > after_id)
                .order_by(items.c.id)
                .limit(chunk)
            ).all()
            old = []
            for row in rows:
                if row.created_at >= cutoff:
                    break
                old.append(row.id)
            if not old:
                return
            swept.predictions += connection.execute(
                delete(predictions).where(predictions.c.item_id.in_(old))
            ).rowcount
            swept.items += connection.execute(
                delete(items).where(items.c.id.in_(old)).where(items.c.scored == true())
            ).rowcount
        after_id = old[-1]
        if len(old) < chunk:
            return


def _delete_spent_submissions(engine: Engine, cutoff, chunk: int, swept: Swept, stop) -> None:
    """Submissions completed before `cutoff` with no item left (all deleted above)."""
    while not stop.is_set():
        with write_transaction(engine) as connection:
            rows = connection.execute(
                select(submissions.c.id, submissions.c.item_count)
                .where(submissions.c.completed_at < cutoff)
                .order_by(submissions.c.completed_at)
                .limit(chunk)
            ).all()
            spent = [
                row.id
                for row in rows
                if connection.execute(
                    select(items.c.id)
                    .where(_in_submission(items.c.id, row.id, row.item_count))
                    .limit(1)
                ).first()
                is None
            ]
            if spent:
                swept.submissions += connection.execute(
                    delete(submissions).where(submissions.c.id.in_(spent))
                ).rowcount
        # Submissions that still hold items stay until their items go.
        if len(rows) < chunk or not spent:
            return


def _delete_expired_keys(engine: Engine, chunk: int, swept: Swept, stop) -> None:
    while not stop.is_set():
        with write_transaction(engine) as connection:
            now = database_now(connection)
            keys = (
                connection.execute(
                    select(idempotency_keys.c.key)
                    .where(idempotency_keys.c.expires_at <= now)
                    .order_by(idempotency_keys.c.expires_at)
                    .limit(chunk)
                )
                .scalars()
                .all()
            )
            if keys:
                swept.idempotency_keys += connection.execute(
                    delete(idempotency_keys)
                    .where(idempotency_keys.c.key.in_(keys))
                    .where(idempotency_keys.c.expires_at <= now)
                ).rowcount
        if len(keys) < chunk:
            return


def sweep(
    engine: Engine,
    retention_seconds: float | None,
    chunk: int = CHUNK_ROWS,
    stop: threading.Event | None = None,
) -> Swept:
    """One retention sweep; `retention_seconds` None keeps every item and submission.

    Expired idempotency keys go either way: an expired key is treated as new anyway.
    Completed submissions are stamped first, so their completion time outlives the items.
    """
    stop = stop or threading.Event()
    swept = Swept()
    mark_completed(engine)
    _delete_expired_keys(engine, chunk, swept, stop)
    if retention_seconds is None:
        return swept
    with engine.connect() as connection:
        cutoff = database_now(connection) - timedelta(seconds=retention_seconds)
    _delete_old_items(engine, cutoff, chunk, swept, stop)
    _delete_spent_submissions(engine, cutoff, chunk, swept, stop)
    return swept

"""Submissions and idempotency keys: what POST /predict stores, and what a client follows.

A submission is one POST: its items are one block of consecutive ids (`_allocate_item_ids`),
and its id is the first of them. Its pending count is a range of the index (scored, id),
its pages a range of the primary key: they cost the submission, not the history.

With an Idempotency-Key, the key's row is inserted first, in the transaction that stores
the items. The primary key on the key lets one transaction win: a concurrent one (on any
API replica) fails its insert, or on MySQL waits for the winner and then fails, and
answers the winner's ids. No lock in the API process takes part.
"""

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Connection, Engine, Row, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from src.db.engine import write_transaction
from src.db.queries import (
    _allocate_item_ids,
    _by_state,
    _items_with_predictions,
    database_now,
    item_values,
)
from src.db.retry import is_lock_conflict
from src.db.tables import idempotency_keys, items, predictions, submissions

# Three requests with one key can deadlock on MySQL when the first rolls back (both
# waiters then want the row); the loser retries and finds the key stored.
KEY_ATTEMPTS = 3
STAMP_CHUNK = 1000
# What a POST stores: a (rows, F) array as the API validated it, or lists of numbers.
Rows = np.ndarray | Sequence[Sequence[float]]


@dataclass(frozen=True)
class Registered:
    submission_id: int
    item_ids: list[int]
    replayed: bool = False


class KeyReusedError(Exception):
    """The Idempotency-Key was used before with other rows."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was used with a different body; "
            "use a new key for a new request"
        )


def request_hash(rows: Rows) -> str:
    """SHA-256 of the rows as float64: 5 and 5.0, or other spacing, give one hash."""
    return hashlib.sha256(np.asarray(rows, dtype=np.float64).tobytes()).hexdigest()


def _item_ids(submission_id: int, count: int) -> list[int]:
    return list(range(submission_id, submission_id + count))


def _store(connection: Connection, first_id: int, rows: Rows) -> None:
    connection.execute(insert(submissions).values(id=first_id, item_count=len(rows)))
    # A list of parameter sets is one executemany, which pymysql sends as multi-row INSERTs.
    connection.execute(insert(items), item_values(first_id, rows))


def register(engine: Engine, rows: Rows) -> Registered:
    """Store one submission of unscored items, in one transaction."""
    first_id = _allocate_item_ids(engine, len(rows))
    with write_transaction(engine) as connection:
        _store(connection, first_id, rows)
    return Registered(first_id, _item_ids(first_id, len(rows)))


def _stored_answer(engine: Engine, key: str, digest: str) -> Registered | None:
    """The answer stored under a live `key` (None: no such key, or expired)."""
    with engine.connect() as connection:
        row = connection.execute(
            select(idempotency_keys).where(idempotency_keys.c.key == key)
        ).one_or_none()
        if row is None or row.expires_at <= database_now(connection):
            return None
    if row.request_hash != digest:
        raise KeyReusedError(key)
    return Registered(row.submission_id, _item_ids(row.submission_id, row.item_count), True)


def _claim_key(connection: Connection, key: str, digest: str, first_id: int, count: int, ttl):
    """Insert the key's row (or take over an expired one); IntegrityError if it is live."""
    now = database_now(connection)
    values = {
        "request_hash": digest,
        "submission_id": first_id,
        "item_count": count,
        "created_at": now,
        "expires_at": now + timedelta(seconds=ttl),
    }
    # An expired key is a new one. The UPDATE locks the row, so of two requests that
    # find it expired, the second re-reads it after the first commits and sees it live.
    taken_over = connection.execute(
        update(idempotency_keys)
        .where(and_(idempotency_keys.c.key == key, idempotency_keys.c.expires_at <= now))
        .values(**values)
    ).rowcount
    if not taken_over:
        connection.execute(insert(idempotency_keys).values(key=key, **values))


def register_once(
    engine: Engine,
    rows: Rows,
    key: str,
    ttl_seconds: float,
    before_storing: Callable[[], None] = lambda: None,
) -> Registered:
    """`register`, unless `key` already stored rows: then that answer (same rows) or
    KeyReusedError (other rows). Nothing is stored twice, whichever replica answers.

    `before_storing` runs once it is known that the key's answer is not stored (a
    replay is answered even when the API would refuse new rows).
    """
    digest = request_hash(rows)
    for attempt in range(KEY_ATTEMPTS):
        if (stored := _stored_answer(engine, key, digest)) is not None:
            return stored
        if attempt == 0:
            before_storing()
        first_id = _allocate_item_ids(engine, len(rows))
        try:
            with write_transaction(engine) as connection:
                _claim_key(connection, key, digest, first_id, len(rows), ttl_seconds)
                _store(connection, first_id, rows)
            return Registered(first_id, _item_ids(first_id, len(rows)))
        except IntegrityError:
            pass  # another request stored the key first: answer as it did
        except OperationalError as error:
            if not is_lock_conflict(error) or attempt == KEY_ATTEMPTS - 1:
                raise
    if (stored := _stored_answer(engine, key, digest)) is not None:
        return stored
    raise RuntimeError(f"Idempotency-Key {key!r}: neither stored nor found")


@dataclass(frozen=True)
class SubmissionState:
    id: int
    total: int
    pending: int
    created_at: datetime
    completed_at: datetime | None

    @property
    def scored(self) -> int:
        # Retention deletes scored items only: what is not pending was scored.
        return self.total - self.pending


def _in_submission(column, submission_id: int, item_count: int):
    return column.between(submission_id, submission_id + item_count - 1)


def _completion_time(connection: Connection, submission_id: int, item_count: int):
    """When the submission's last prediction was stored (None if none is left)."""
    return connection.execute(
        select(func.max(predictions.c.created_at)).where(
            _in_submission(predictions.c.item_id, submission_id, item_count)
        )
    ).scalar_one()


def get_status(engine: Engine, submission_id: int) -> SubmissionState | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(submissions).where(submissions.c.id == submission_id)
        ).one_or_none()
        if row is None:
            return None
        pending = connection.execute(
            _by_state(
                select(func.count())
                .select_from(items)
                .where(_in_submission(items.c.id, row.id, row.item_count)),
                scored=False,
            )
        ).scalar_one()
        completed_at = row.completed_at
        if pending == 0 and completed_at is None:
            # Scored since the job's last completion step: the same time that step stores.
            completed_at = _completion_time(connection, row.id, row.item_count)
    return SubmissionState(row.id, row.item_count, pending, row.created_at, completed_at)


def list_submission_items(
    engine: Engine, status: SubmissionState, limit: int, after_id: int | None
) -> list[Row]:
    """One page of the submission's items with their predictions, in id order."""
    query = (
        _items_with_predictions()
        .where(_in_submission(items.c.id, status.id, status.total))
        .order_by(items.c.id)
        .limit(limit)
    )
    if after_id is not None:
        query = query.where(items.c.id > after_id)
    with engine.connect() as connection:
        return list(connection.execute(query))


def mark_completed(engine: Engine) -> int:
    """Stamp `completed_at` on the submissions whose items are all scored; how many.

    Run by the job between passes. Every submission below the lowest unscored id is
    complete; the few just completed are found among the incomplete ones (the index on
    completed_at) without reading any item, and each is stamped with its last prediction's
    time (its own range of predictions.item_id). A submission scored out of order, above
    an unscored item, is stamped once that item is scored; GET /submissions computes the
    same time meanwhile.
    """
    with engine.connect() as connection:
        lowest_unscored = connection.execute(
            _by_state(select(items.c.id), scored=False).order_by(items.c.id).limit(1)
        ).scalar_one_or_none()
        incomplete = select(submissions.c.id, submissions.c.item_count).where(
            submissions.c.completed_at.is_(None)
        )
        if lowest_unscored is not None:
            incomplete = incomplete.where(
                submissions.c.id + submissions.c.item_count <= lowest_unscored
            )
        completed = connection.execute(incomplete).all()
    stamped = 0
    # Short transactions, as retention's: a thousand submissions each at most.
    for start in range(0, len(completed), STAMP_CHUNK):
        with write_transaction(engine) as connection:
            now = database_now(connection)
            for row in completed[start : start + STAMP_CHUNK]:
                last = _completion_time(connection, row.id, row.item_count)
                stamped += connection.execute(
                    update(submissions)
                    .where(submissions.c.id == row.id)
                    .where(submissions.c.completed_at.is_(None))
                    .values(completed_at=last or now)
                ).rowcount
    return stamped


def backlog_exceeds(engine: Engine, bound: int) -> bool:
    """More than `bound` unscored items? Counts at most bound + 1 index entries."""
    first_entries = _by_state(select(items.c.id), scored=False).limit(bound + 1).subquery()
    with engine.connect() as connection:
        counted = connection.execute(select(func.count()).select_from(first_entries)).scalar_one()
    return counted > bound

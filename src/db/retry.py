"""Retrying database work while the server is unreachable (tenacity, exponential backoff)."""

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    stop_when_event_set,
    wait_exponential,
    wait_fixed,
)

from src.db.migrate import SchemaError, require_current_schema

logger = logging.getLogger(__name__)
T = TypeVar("T")

# What a dead server, a cut connection, a full pool or a deadlock look like through
# SQLAlchemy: all worth another attempt. Anything else (a bug, a bad statement) is not.
DATABASE_DOWN_ERRORS = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)
# MySQL's "lock wait timeout" and "deadlock": the server is fine, one transaction lost.
_LOCK_CONFLICT_CODES = frozenset({1205, 1213})


def is_lock_conflict(error: BaseException) -> bool:
    """A deadlock or lock wait timeout, which only the transaction that got it needs to redo."""
    if not isinstance(error, OperationalError):
        return False
    args = getattr(error.orig, "args", ())
    return bool(args) and args[0] in _LOCK_CONFLICT_CODES


def call_with_db_retry(
    work: Callable[[], T],
    *,
    what: str,
    max_wait: float = 30,
    give_up_after: float | None = None,
    stop_event: threading.Event | None = None,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """`work()`, retried with exponential backoff (0.5 s, 1 s, ... up to `max_wait`).

    Retries forever unless `give_up_after` seconds pass or `stop_event` is set; then
    the last database error is raised.
    """

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.warning(
            "%s: database unreachable (attempt %d, next in %.1fs): %s",
            what,
            state.attempt_number,
            state.upcoming_sleep,
            error,
        )
        if on_retry:
            on_retry()

    stop = stop_never if give_up_after is None else stop_after_delay(give_up_after)
    # Waiting on the event, not time.sleep: SIGTERM ends the wait at once.
    sleep = stop_event.wait if stop_event else threading.Event().wait
    if stop_event is not None:
        stop = stop | stop_when_event_set(stop_event)
    retrying = Retrying(
        retry=retry_if_exception_type(DATABASE_DOWN_ERRORS),
        wait=wait_exponential(multiplier=0.5, max=max_wait),
        stop=stop,
        sleep=sleep,
        before_sleep=log_retry,
        reraise=True,
    )
    return retrying(work)


def require_current_schema_when_reachable(
    engine: Engine, migration_wait: float = 0, **retry_options
) -> str:
    """Check the schema (src/db/migrate.py), waiting for the database to come up first.

    With `migration_wait`, a schema that is not this release's is checked again every
    second for that long: under an orchestrator that ignores start-up order (Swarm, a
    Kubernetes Deployment beside its migrate Job) the migration may still be running.
    """

    def check() -> str:
        return call_with_db_retry(
            lambda: require_current_schema(engine), what="checking the schema", **retry_options
        )

    if not migration_wait:
        return check()
    stop = stop_after_delay(migration_wait)
    if (stop_event := retry_options.get("stop_event")) is not None:
        stop = stop | stop_when_event_set(stop_event)
    retrying = Retrying(
        retry=retry_if_exception_type(SchemaError),
        wait=wait_fixed(1),
        stop=stop,
        sleep=stop_event.wait if stop_event is not None else threading.Event().wait,
        before_sleep=lambda state: logger.info(
            "waiting for the migration (%s)", state.outcome.exception() if state.outcome else ""
        ),
        reraise=True,
    )
    return retrying(check)

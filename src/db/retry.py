"""Retrying database work while the server is unreachable (tenacity, exponential backoff)."""

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

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
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

# What a dead server, a cut connection, a full pool or a deadlock look like through
# SQLAlchemy: all worth another attempt. Anything else (a bug, a bad statement) is not.
DATABASE_DOWN_ERRORS = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)
# MySQL's "lock wait timeout" and "deadlock": the server is fine, one transaction lost.
_LOCK_CONFLICT_CODES = frozenset({1205, 1213})


# The OS may hand a process's SIGTERM to any of its threads, and Python runs the handler
# only when the main thread next runs Python code: a long wait there is cut into slices.
SIGNAL_CHECK_SECONDS = 0.25


def wait_unless_stopped(stop_event: threading.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `stop_event` (a signal handler sets it); True once set."""
    deadline = time.monotonic() + seconds
    while not stop_event.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        stop_event.wait(min(left, SIGNAL_CHECK_SECONDS))
    return True


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
    sleep = functools.partial(wait_unless_stopped, stop_event or threading.Event())
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

"""Overload and hostile clients, the same at every process: what is let in, for how long.

- Admission: at most `MAX_IN_FLIGHT` requests run at once; up to `ADMISSION_QUEUE` more
  may wait up to `ADMISSION_WAIT` seconds for room, then get 503 + `Retry-After` instead of
  queueing into their caller's deadline. One that finds the queue full too is refused by
  the connection itself (src/connections.py), before the app parses it, so that refusing
  costs next to nothing. Probes (/health, /metrics, /v2/health/*) are never refused.
- Deadlines: `X-Request-Timeout-Ms` carries the caller's remaining time; the process keeps
  it in `deadline_var` (the proxy sends what is left to its backends), and a request whose
  deadline passed while it waited for admission is dropped with 504, unworked.
- Bodies: a `Content-Length` over `MAX_BODY_BYTES` gets 413 before any byte of the body is
  read; a chunked body gets 413 as soon as it passes the limit. Both close the connection,
  so the rest is never read.

Plain ASGI middlewares, not BaseHTTPMiddleware: they sit on every request's hot path.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar

from prometheus_client import Counter, Gauge
from starlette.exceptions import HTTPException

logger = logging.getLogger(__name__)

DEADLINE_HEADER = "X-Request-Timeout-Ms"
_DEADLINE_HEADER_KEY = DEADLINE_HEADER.lower().encode()
# Liveness and scraping must keep answering while the process sheds load.
NEVER_REFUSED = frozenset({"/health", "/metrics", "/v2/health/live", "/v2/health/ready"})
# What a refused client is told to wait; a second lets the queue drain without idling it.
RETRY_AFTER_SECONDS = 1

# The monotonic time by which the current request must be answered, or None (no deadline).
deadline_var: ContextVar[float | None] = ContextVar("deadline", default=None)

ADMITTED = Counter("admission_admitted_total", "Requests let in by admission control")
REFUSED = Counter(
    "admission_refused_total",
    "Requests refused before any work: overloaded (503), deadline (504), body_too_large (413)",
    ["reason"],
)
IN_FLIGHT = Gauge("admission_in_flight", "Requests admitted and not yet answered")

ErrorBuilder = Callable[..., object]


def remaining_seconds() -> float | None:
    """Seconds left before the current request's deadline (may be negative), or None."""
    deadline = deadline_var.get()
    return None if deadline is None else deadline - time.monotonic()


def _header(scope: dict, key: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == key:
            return value
    return None


def _caller_timeout(scope: dict) -> float | None:
    """The caller's remaining time in seconds, from its header; None when absent or unusable."""
    value = _header(scope, _DEADLINE_HEADER_KEY)
    if value is None:
        return None
    try:
        milliseconds = float(value)
    except ValueError:
        return None
    # NaN and negative values are ignored rather than refused: the header is advisory.
    return milliseconds / 1000 if milliseconds >= 0 else None


def overloaded_response(process: str, error_response: ErrorBuilder):
    """The one 503 a process answers when it has no room (the app's and the connection's)."""
    return error_response(
        503, f"{process} overloaded", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


class AdmissionGate:
    """A bound on requests in flight with a short, bounded wait, and one log line per change
    of state.

    No lock: every request runs on one event loop and nothing here awaits between the
    check and the update, except `asyncio.Semaphore.acquire`, which is fair and cancel-safe.
    """

    def __init__(self, limit: int, wait: float, process: str, queue: int) -> None:
        self.limit = limit
        self.wait = wait
        self.process = process
        self.queue = queue
        self._slots = asyncio.Semaphore(limit)
        self.in_flight = 0
        self.waiting = 0
        self.shedding = False
        self._refused_since_change = 0

    def full(self) -> bool:
        """No room and no place in the queue: a request now would be refused without waiting."""
        return self._slots.locked() and (self.waiting >= self.queue or self.wait <= 0)

    async def enter(self) -> bool:
        """True when admitted (call `leave` once done); False: refuse the request."""
        if self.full():
            self.refused()
            return False
        if self._slots.locked():
            self.waiting += 1
            try:
                async with asyncio.timeout(self.wait):
                    await self._slots.acquire()
            except TimeoutError:
                self.refused()
                return False
            finally:
                self.waiting -= 1
        else:
            await self._slots.acquire()  # free: returns without suspending
        self.in_flight += 1
        IN_FLIGHT.inc()
        ADMITTED.inc()
        return True

    def leave(self) -> None:
        self.in_flight -= 1
        IN_FLIGHT.dec()
        self._slots.release()
        # Back to normal once half the room is free again: not on every admitted request,
        # so a process at its bound does not log a change per request.
        if self.shedding and self.in_flight <= self.limit // 2:
            self.shedding = False
            logger.info(
                "%s admitting again: %d in flight of %d; %d refused while overloaded",
                self.process,
                self.in_flight,
                self.limit,
                self._refused_since_change,
                extra={"admission": "admitting"},
            )
            self._refused_since_change = 0

    def refused(self) -> None:
        """Count one refusal (by the app or the connection), logging only a change of state."""
        REFUSED.labels("overloaded").inc()
        self._refused_since_change += 1
        if not self.shedding:
            self.shedding = True
            logger.warning(
                "%s overloaded: %d in flight, refusing what waits over %gs (MAX_IN_FLIGHT=%d)",
                self.process,
                self.in_flight,
                self.wait,
                self.limit,
                extra={"admission": "refusing"},
            )


class AdmissionMiddleware:
    """Outermost: refuses before the request is logged or counted, so shedding stays cheap.

    Refusals are counted in `admission_refused_total`, and logged once per change of state.
    """

    def __init__(
        self,
        app,
        *,
        gate: AdmissionGate,
        default_timeout: float | None,
        error_response: ErrorBuilder,
    ) -> None:
        self.app = app
        self.gate = gate
        self.default_timeout = default_timeout
        self._overloaded = overloaded_response(gate.process, error_response)
        self._late = error_response(
            504, "deadline exceeded: the caller's time ran out before the work started"
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in NEVER_REFUSED:
            await self.app(scope, receive, send)
            return
        timeout = _caller_timeout(scope)
        if timeout is None:
            timeout = self.default_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        if not await self.gate.enter():
            await self._overloaded(scope, receive, send)
            return
        try:
            if deadline is not None and time.monotonic() >= deadline:
                # The caller has given up by now: its answer would be thrown away.
                REFUSED.labels("deadline").inc()
                await self._late(scope, receive, send)
                return
            token = deadline_var.set(deadline)
            try:
                await self.app(scope, receive, send)
            finally:
                deadline_var.reset(token)
        finally:
            self.gate.leave()


def body_too_large_detail(limit: int) -> str:
    return f"request body too large: more than MAX_BODY_BYTES={limit} bytes"


class BodyLimitMiddleware:
    """413 as soon as the body is known to be over the limit, and the connection closed."""

    def __init__(self, app, *, max_body_bytes: int, error_response: ErrorBuilder) -> None:
        self.app = app
        self.limit = max_body_bytes
        self._too_large = error_response(
            413, body_too_large_detail(max_body_bytes), headers={"Connection": "close"}
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            REFUSED.labels("body_too_large").inc()
            await self._too_large(scope, receive, send)
            return
        await self.app(scope, self._limited(receive), send)

    def _limited(self, receive):
        received = 0
        limit = self.limit

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    REFUSED.labels("body_too_large").inc()
                    # Answered by the app's HTTPException handler, in the one error shape.
                    raise HTTPException(
                        413, body_too_large_detail(limit), headers={"Connection": "close"}
                    )
            return message

        return limited_receive

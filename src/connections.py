"""Connections, bounded: a header-read timeout and a cap on open connections per process.

uvicorn has neither (its `timeout_keep_alive` only runs between requests, and
`--limit-concurrency` answers 503 to requests but keeps every connection open), so its
httptools protocol is extended: a connection that has not finished a request's headers
within `HEADER_TIMEOUT` seconds is closed, and one beyond `MAX_CONNECTIONS` is closed as
soon as it is accepted.
"""

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and a connection cap.

    Configure with `configured()`, which returns a subclass carrying the two limits.
    """

    header_timeout: float = 5.0
    max_connections: int = 2048
    # Shared by every connection of the process: one log line per change, not per connection.
    _refusing = False

    @classmethod
    def configured(
        cls, header_timeout: float, max_connections: int
    ) -> type["GuardedHttpToolsProtocol"]:
        return type(
            cls.__name__,
            (cls,),
            {"header_timeout": header_timeout, "max_connections": max_connections},
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        cls = type(self)
        if len(self.connections) > self.max_connections:
            if not cls._refusing:
                cls._refusing = True
                logger.warning(
                    "closing new connections: %d open, MAX_CONNECTIONS=%d",
                    len(self.connections) - 1,
                    self.max_connections,
                )
            transport.close()
            return
        if cls._refusing and len(self.connections) <= self.max_connections // 2:
            cls._refusing = False
            logger.info("accepting connections again: %d open", len(self.connections))
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # The next request on a kept-alive connection gets its own header deadline.
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

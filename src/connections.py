"""Connections, bounded: a header-read timeout, a cap on open connections per process, and
the cheap refusal of what admission control has no room for.

uvicorn has none of these (its `timeout_keep_alive` only runs between requests, and
`--limit-concurrency` answers 503 to requests but keeps every connection open), so its
httptools protocol is extended: a connection that has not finished a request's headers
within `HEADER_TIMEOUT` seconds is closed, and one beyond `MAX_CONNECTIONS` is closed as
soon as it is accepted. A request that arrives when the admission gate and its queue are
full is answered the gate's 503 straight from its headers: no ASGI scope, task,
middleware or log line, so a refusal costs a fraction of what a request costs
(docs/overload.md).
"""

import asyncio
import logging

from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from src.admission import NEVER_REFUSED, AdmissionGate

logger = logging.getLogger(__name__)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and a connection cap.

    Configure with `configured()`, which returns a subclass carrying the two limits.
    """

    header_timeout: float = 5.0
    max_connections: int = 2048
    # The app's admission gate and its 503; None: every request goes to the app.
    admission_gate: AdmissionGate | None = None
    overloaded: Response | None = None
    # Shared by every connection of the process: one log line per change, not per connection.
    _refusing = False

    @classmethod
    def configured(
        cls,
        header_timeout: float,
        max_connections: int,
        admission_gate: AdmissionGate | None = None,
        overloaded: Response | None = None,
    ) -> type["GuardedHttpToolsProtocol"]:
        return type(
            cls.__name__,
            (cls,),
            {
                "header_timeout": header_timeout,
                "max_connections": max_connections,
                "admission_gate": admission_gate,
                "overloaded": overloaded,
            },
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        # The request being parsed was answered here: its body, if any, is skipped.
        self._answered_here = False
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
        self._answered_here = False
        super().on_message_begin()
        # The next request on a kept-alive connection gets its own header deadline.
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        if self._refuse_as_overloaded():
            self._answered_here = True
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._answered_here:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._answered_here:
            super().on_message_complete()

    def _refuse_as_overloaded(self) -> bool:
        """Answer the gate's 503 now if the gate and its queue are full; False: let the app.

        Only when no earlier request of the connection is still being answered (the answers
        keep their order), never a probe, a HEAD or an upgrade: those go the usual way.
        """
        gate = self.admission_gate
        if gate is None or not gate.full():
            return False
        if self.cycle is not None and not self.cycle.response_complete:
            return False
        if self.parser.get_method() == b"HEAD" or self.parser.should_upgrade():
            return False
        path = self.url.partition(b"?")[0]
        if b"%" in path or path.decode("ascii", "replace") in NEVER_REFUSED:
            return False
        gate.refused()
        # Kept alive, the body still to come is skipped as it arrives; a body of unknown
        # length, or one the client waits for leave to send (Expect: 100-continue), is not
        # worth reading: the connection is closed instead, as it would be for HTTP/1.0.
        keep_alive = (
            self.parser.should_keep_alive()
            and self.parser.get_http_version() == "1.1"
            and not self.expect_100_continue
            and not any(name == b"transfer-encoding" for name, _ in self.headers)
        )
        self.transport.write(self._overloaded_bytes(keep_alive))
        if keep_alive:
            self.on_response_complete()
        else:
            self.transport.close()
        return True

    def _overloaded_bytes(self, keep_alive: bool) -> bytes:
        """The bytes uvicorn would write for the app's 503: the same status line and headers."""
        response = self.overloaded
        assert response is not None
        content = [STATUS_LINE[response.status_code]]
        for name, value in [*self.server_state.default_headers, *response.raw_headers]:
            content.extend([name, b": ", value, b"\r\n"])
        if not keep_alive:
            content.append(b"connection: close\r\n")
        content.extend([b"\r\n", response.body])
        return b"".join(content)

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

"""The fan-out: one call to every class service at once, each with its own deadline.

One long-lived, pooled aiohttp session is created in the proxy's lifespan and shared
by every request; a failed or slow service yields a `BackendResult` with an error
instead of an exception, so callers can answer with whatever succeeded.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import orjson
from prometheus_client import Counter, Gauge, Histogram
from yarl import URL

from src.admission import DEADLINE_HEADER, remaining_seconds
from src.observability import REQUEST_ID_HEADER, request_id_var
from src.oip.schemas import BINARY_HEADER
from src.proxy.breaker import CircuitBreaker, CircuitState
from src.proxy.replicas import Replica, ReplicaSet, Resolver, resolve_host

logger = logging.getLogger(__name__)

BACKEND_LATENCY = Histogram(
    "proxy_backend_request_duration_seconds",
    "Time for one backend call from the proxy, failures included",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BACKEND_FAILURES = Counter(
    "proxy_backend_failures_total",
    "Backend calls without a usable answer (timeout, unreachable, bad_status, bad_response)",
    ["service", "reason"],
)
CIRCUIT_STATE = Gauge(
    "proxy_backend_circuit_state",
    "Circuit breaker state per backend: 0 closed, 1 half-open (one trial call), 2 open",
    ["service"],
)
SHORT_CIRCUITED = Counter(
    "proxy_backend_short_circuited_total",
    "Backend calls not made because the service's circuit was open",
    ["service"],
)
RETRIES = Counter(
    "proxy_backend_retries_total",
    "Calls made again on another replica after the connection failed before any answer",
    ["service"],
)
# What a replica that is gone or going looks like before it sent any answer: refused,
# reset, closed on a pooled connection, or no connection within CONNECT_TIMEOUT. A
# predict call is idempotent, so it is safe to make again elsewhere.
CONNECTION_FAILURES = (
    aiohttp.ClientConnectorError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ConnectionTimeoutError,
)

# Failures that say nothing about the service's health: the caller's time ran out (before
# the call, or cutting its timeout short), or the service refused as overloaded. They
# never count against its circuit, so load alone cannot open it.
# A 404 is the caller's (an unknown model version), not the service's failing.
NO_VERDICT = frozenset({"deadline", "overloaded", "queued", "not_found"})
# Less time than this left: a call is not started (it could not be answered in time).
MIN_CALL_SECONDS = 0.005


# Checks a parsed answer: returns it as the caller will use it, or raises ValueError.
AnswerCheck = Callable[[Any], Any]


@dataclass(frozen=True)
class BackendResult:
    service: str
    # The answer as its check made it (without a check, the parsed JSON).
    body: Any = None
    # The answer's bytes as the service sent them: spliced, not re-encoded, into answers.
    raw: bytes = b""
    # Set when the answer is in the binary tensor extension: the length of its JSON part.
    header_length: str | None = None
    error: str | None = None
    detail: str = ""
    # After a failure: whether another replica of the service is still in rotation.
    others_available: bool = field(default=False, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_error_entry(self) -> dict[str, str]:
        return {"error": self.error or "", "detail": self.detail}


def create_session(max_connections: int, keepalive_seconds: float) -> aiohttp.ClientSession:
    """The proxy's one pooled session (timeouts are applied per call, in `Backends`).

    aiohttp's session directly, not httpx: httpx's client layer over the same pool cost
    0.17 to 0.23 ms of CPU per backend call, more than the call under it, and about half
    of what the proxy spent per request (`bench_proxy.py --scenario client`, docs/benchmarks.md).
    Idle connections are closed after `keepalive_seconds`, which must be shorter than the
    services' keep-alive timeout: a request sent on a connection the server is closing
    fails (seen in bench/bench_proxy.py when the services closed first). No cookie jar:
    one session serves every caller of the proxy, so a backend's Set-Cookie must never be
    replayed on another caller's request.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=keepalive_seconds),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
    )


def _log_circuit_change(
    breaker: CircuitBreaker, old: CircuitState, new: CircuitState, reason: str
) -> None:
    # One line per change, never one per request: while open, calls are skipped silently.
    CIRCUIT_STATE.labels(breaker.name).set(new)
    level = logging.WARNING if new is CircuitState.OPEN else logging.INFO
    logger.log(
        level,
        "circuit of %s %s -> %s: %s",
        breaker.name,
        old.label,
        new.label,
        reason,
        extra={"service": breaker.name, "circuit": new.label},
    )


class Backends:
    """Calls every configured service concurrently with `asyncio.gather`.

    Each service has its own circuit breaker, shared by every request of the process;
    `hard` names the services without which no answer is given (see `missing_required`).
    A service is one URL or several (its replicas are every address they resolve to,
    `ReplicaSet`); a call whose connection fails before any answer is made once more on
    another replica, and one replica's failures open the circuit only when no other
    replica is left in rotation.
    """

    def __init__(
        self,
        services: dict[str, str | Sequence[str]],
        session: aiohttp.ClientSession,
        timeout: float,
        *,
        timeouts: dict[str, float] | None = None,
        failure_threshold: int = 5,
        cooldown: float = 5.0,
        hard: tuple[str, ...] = (),
        connect_timeout: float | None = None,
        resolve_interval: float = 2.0,
        eject_after: int = 1,
        ejection_seconds: float = 5.0,
        resolver: Resolver = resolve_host,
    ):
        urls = {
            name: [str(url).rstrip("/") for url in ([value] if isinstance(value, str) else value)]
            for name, value in services.items()
        }
        self.services = {name: ",".join(service_urls) for name, service_urls in urls.items()}
        self.replicas = {
            name: ReplicaSet(
                name,
                service_urls,
                resolve_interval=resolve_interval,
                eject_after=eject_after,
                ejection_seconds=ejection_seconds,
                resolver=resolver,
            )
            for name, service_urls in urls.items()
        }
        # Connecting takes well under a millisecond on a host or cluster network; a replica
        # that vanished (killed, its address gone) never answers the SYN, so waiting the
        # whole deadline for it would spend what the retry on another replica needs. Only
        # then: with no other replica to try, a busy machine's slow connect is no failure.
        self._first_try = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        self._last_try = aiohttp.ClientTimeout(total=None)
        self.session = session
        self.timeout = timeout
        # Each service's deadline: the global one unless overridden by name.
        self.timeouts = {name: (timeouts or {}).get(name, timeout) for name in self.services}
        self.hard = tuple(name for name in self.services if name in hard)
        self.breakers = {
            name: CircuitBreaker(name, failure_threshold, cooldown, _log_circuit_change)
            for name in self.services
        }
        for name in self.services:
            CIRCUIT_STATE.labels(name).set(CircuitState.CLOSED)
        # Looked up once: labels() takes a lock and a dict lookup on every call.
        self._latency = {name: BACKEND_LATENCY.labels(name) for name in self.services}
        # Each service's share of the pool: a call waits here, not inside aiohttp's pool,
        # so time spent queued behind the proxy's own load is told apart from the service's.
        share = max(1, (session.connector.limit or 100) // max(1, len(self.services)))
        self._slots = {name: asyncio.Semaphore(share) for name in self.services}

    async def call_all(
        self,
        method: str,
        path: str,
        content: bytes | None = None,
        expect: AnswerCheck | None = None,
    ) -> dict[str, BackendResult]:
        """Every service's answer; `content` is a JSON body, sent as is to every service.

        With `expect`, an answer it rejects (ValueError) is a failure like a timeout.
        """
        headers = _headers(content)
        results = await asyncio.gather(
            *(
                self._guarded_call(name, method, path, content, headers, expect)
                for name in self.services
            )
        )
        return {result.service: result for result in results}

    async def call_one(
        self,
        service: str,
        method: str,
        path: str,
        content: bytes | None = None,
        expect: AnswerCheck | None = None,
        headers: dict[str, str] | None = None,
    ) -> BackendResult:
        """One service's answer, as `call_all` would give it (the v2 per-model routes).

        `headers` go along with the request (the binary extension's header length).
        """
        headers = {**_headers(content), **(headers or {})}
        return await self._guarded_call(service, method, path, content, headers, expect)

    def missing_required(self, answered: set[str]) -> list[str]:
        """The hard dependencies not among the services that `answered`."""
        return [name for name in self.hard if name not in answered]

    def circuit(self, service: str) -> str:
        return self.breakers[service].state.label

    async def _guarded_call(self, service: str, *call_args) -> BackendResult:
        """`_call` behind the service's breaker: no network call at all while it is open."""
        timeout = self.timeouts[service]
        left = remaining_seconds()
        if left is not None and left < timeout:
            if left < MIN_CALL_SECONDS:
                return self._failed(
                    service, "deadline", f"not called: {max(left, 0) * 1000:.0f} ms left"
                )
            timeout = left
        breaker = self.breakers[service]
        permit = breaker.allow()
        if permit is None:
            SHORT_CIRCUITED.labels(service).inc()
            return BackendResult(service, error="circuit_open", detail=_why_skipped(breaker))
        try:
            result = await self._call(service, *call_args, timeout)
        except asyncio.CancelledError:
            # The caller went away: no verdict on the service, so a trial passes to the next.
            breaker.release(permit)
            raise
        except Exception:
            breaker.record(permit, ok=False, reason="error")
            raise
        if result.error in NO_VERDICT or not (result.ok or not result.others_available):
            # Load, the caller's deadline, or one bad replica while others are in rotation:
            # not a verdict on the service.
            breaker.release(permit)
        else:
            breaker.record(permit, ok=result.ok, reason=result.error or "")
        return result

    async def _call(
        self,
        service: str,
        method: str,
        path: str,
        content: bytes | None,
        headers: dict,
        expect: AnswerCheck | None,
        timeout: float,
    ) -> BackendResult:
        replicas = self.replicas[service]
        replica: Replica | None = None
        url: URL | str = self.services[service] + path
        started = time.perf_counter()
        slots = self._slots[service]
        if slots.locked():
            try:
                async with asyncio.timeout(timeout):
                    await slots.acquire()
            except TimeoutError:
                return self._failed(
                    service, "queued", f"not called: no free connection to {url} in {timeout:g}s"
                )
            timeout -= time.perf_counter() - started
        else:
            await slots.acquire()  # free: returns without suspending
        # The service learns how long the caller will wait, and drops the work once late.
        headers = {**headers, DEADLINE_HEADER: str(int(timeout * 1000))}
        try:
            # One hard deadline for the whole call, reading the body and the retry included:
            # a service that trickles bytes cannot hold the request longer.
            async with asyncio.timeout(timeout):
                await replicas.ready()
                replica = replicas.pick()
                url = replica.url(path)
                first_try = self._first_try if len(replicas.replicas) > 1 else self._last_try
                try:
                    status, headers_in, raw = await self._request(
                        method, url, content, headers, first_try
                    )
                except CONNECTION_FAILURES as error:
                    other = replicas.pick(exclude=replica)
                    if other is None:
                        raise
                    replicas.record(replica, ok=False, reason=f"{type(error).__name__}: {error}")
                    RETRIES.labels(service).inc()
                    replica, url = other, other.url(path)
                    status, headers_in, raw = await self._request(
                        method, url, content, headers, self._last_try
                    )
            if status == 503 and "Retry-After" in headers_in:
                result = self._failed(service, "overloaded", f"{url} refused: overloaded")
            elif status == 404:
                result = replace(
                    self._failed(service, "not_found", f"HTTP 404 from {url}"), raw=raw
                )
            elif status != 200:
                result = self._failed(service, "bad_status", f"HTTP {status} from {url}")
            else:
                # A binary answer's JSON part is checked; its tensors' bytes are passed on.
                header_length = headers_in.get(BINARY_HEADER)
                body = orjson.loads(raw if header_length is None else raw[: int(header_length)])
                body = body if expect is None else expect(body)
                result = BackendResult(service, body=body, raw=raw, header_length=header_length)
        except aiohttp.ClientError as error:
            # Before TimeoutError: a connect timeout is both, and means unreachable.
            # The class and its message: the repr of aiohttp's errors spells out its pool keys.
            result = self._failed(service, "unreachable", f"{url}: {type(error).__name__}: {error}")
        except TimeoutError:
            if timeout < self.timeouts[service]:
                # Cut short by the caller's deadline or by queueing, not the service's timeout.
                result = self._failed(
                    service, "deadline", f"the caller's deadline passed during the call to {url}"
                )
            else:
                result = self._failed(service, "timeout", f"no answer from {url} in {timeout}s")
        except ValueError as error:  # not JSON, or not the answer `expect` wants
            result = self._failed(service, "bad_response", f"{url}: {error}")
        finally:
            slots.release()
            self._latency[service].observe(time.perf_counter() - started)
        if replica is None or result.error in NO_VERDICT:
            return result
        replicas.record(replica, ok=result.ok, reason=result.error or "")
        return replace(result, others_available=replicas.others_available(replica))

    async def _request(
        self,
        method: str,
        url: URL,
        content: bytes | None,
        headers: dict,
        timeout: aiohttp.ClientTimeout,
    ) -> tuple[int, Any, bytes]:
        """The status, the headers and the body of one call."""
        async with self.session.request(
            method, url, data=content, headers=headers, timeout=timeout
        ) as response:
            return response.status, response.headers, await response.read()

    @staticmethod
    def _failed(service: str, reason: str, detail: str) -> BackendResult:
        BACKEND_FAILURES.labels(service, reason).inc()
        # Load-shedding outcomes are counted, not logged one by one (admission logs the change).
        level = logging.DEBUG if reason in NO_VERDICT else logging.WARNING
        logger.log(level, "backend %s failed (%s): %s", service, reason, detail)
        return BackendResult(service, error=reason, detail=detail)


def _headers(content: bytes | None) -> dict[str, str]:
    """The request's id for every backend, and the JSON type when there is a body."""
    headers = {REQUEST_ID_HEADER: request_id_var.get()}
    if content is not None:
        headers["Content-Type"] = "application/json"
    return headers


def _why_skipped(breaker: CircuitBreaker) -> str:
    if breaker.state is CircuitState.OPEN:
        return (
            "not called: circuit open after repeated failures, "
            f"next trial in {breaker.seconds_to_trial():.1f}s"
        )
    return "not called: circuit half-open, its one trial call is in flight"

"""`Backends` and its breakers, against small real HTTP servers in this process."""

import asyncio
import time
from http.server import BaseHTTPRequestHandler

from src.proxy.backends import Backends, create_session
from src.proxy.breaker import CircuitState
from tests.stub_servers import stub_http_server


class _SlowHandler(BaseHTTPRequestHandler):
    """Answers every GET with 200 `{}` after a second."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the stdlib's naming)
        time.sleep(1)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_a_trial_cancelled_midway_leaves_the_trial_to_the_next_caller():
    async def scenario() -> tuple[CircuitState, CircuitState, bool]:
        with stub_http_server(_SlowHandler) as url:
            async with create_session(max_connections=4, keepalive_seconds=5) as session:
                backends = Backends(
                    {"slow": url}, session, timeout=0.2, failure_threshold=1, cooldown=0.1
                )
                breaker = backends.breakers["slow"]
                first = await backends.call_all("GET", "/health")
                assert first["slow"].error == "timeout"
                assert breaker.state is CircuitState.OPEN
                await asyncio.sleep(0.15)
                # The trial goes out; its caller is cancelled before it has an answer.
                call = asyncio.create_task(backends.call_all("GET", "/health"))
                await asyncio.sleep(0.05)
                during = breaker.state
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)
                after = breaker.state
                # Not stuck with a trial that will never report: the next call is the trial.
                next_trial = breaker.allow()
                return during, after, next_trial is not None and next_trial.trial

    during, after, next_is_trial = asyncio.run(scenario())
    assert during is CircuitState.HALF_OPEN
    assert after is CircuitState.HALF_OPEN
    assert next_is_trial


def test_hard_dependencies_and_timeouts_are_kept_per_service():
    async def scenario() -> Backends:
        async with create_session(max_connections=4, keepalive_seconds=5) as session:
            return Backends(
                {"a": "http://127.0.0.1:1", "b": "http://127.0.0.1:2"},
                session,
                timeout=2.0,
                timeouts={"b": 0.5},
                hard=("b",),
            )

    backends = asyncio.run(scenario())
    assert backends.timeouts == {"a": 2.0, "b": 0.5}
    assert backends.missing_required({"a"}) == ["b"]
    assert backends.missing_required({"a", "b"}) == []


def test_calls_queued_behind_the_proxys_own_load_do_not_count_against_the_circuit():
    async def scenario():
        with stub_http_server(_SlowHandler) as url:
            # One pooled connection: of three calls at once, one is sent, two wait for it.
            async with create_session(max_connections=1, keepalive_seconds=5) as session:
                backends = Backends(
                    {"slow": url}, session, timeout=0.3, failure_threshold=2, cooldown=60
                )
                results = await asyncio.gather(
                    *(backends.call_one("slow", "GET", "/health") for _ in range(3))
                )
                return sorted(result.error for result in results), backends.circuit("slow")

    errors, circuit = asyncio.run(scenario())
    assert errors == ["queued", "queued", "timeout"]
    # Only the call that was sent and timed out counts: one failure, below the threshold.
    assert circuit == "closed"

"""Run a container healthcheck command on this machine against a stand-in /health server."""

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class StandInServer:
    """Answers GET /health with `health_status`, anything else with 404; records the paths."""

    health_status: int = 200
    paths: list[str] = field(default_factory=list)
    port: int = 0


@contextmanager
def stand_in_server(health_status: int) -> Iterator[StandInServer]:
    state = StandInServer(health_status=health_status)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.paths.append(self.path)
            status = state.health_status if self.path == "/health" else 404
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def run_check(command: list[str], port: int) -> subprocess.CompletedProcess:
    """Run an exec-form check as the container would, with this interpreter as `python`."""
    assert command and command[0] == "python", f"expected a `python` command, got {command!r}"
    env = {**os.environ, "PORT": str(port)}
    return subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=30
    )


def assert_checks_health(command: list[str], what: str) -> None:
    """The check passes on a healthy /health and fails on an unhealthy one or no server."""
    with stand_in_server(200) as server:
        healthy = run_check(command, server.port)
    assert healthy.returncode == 0, (
        f"{what}: the check failed against a healthy /health: {healthy.stderr[-500:]}"
    )
    assert server.paths == ["/health"], f"{what}: the check requested {server.paths}, not /health"

    with stand_in_server(503) as server:
        unhealthy = run_check(command, server.port)
    assert unhealthy.returncode != 0, f"{what}: the check passed although /health answered 503"

    with stand_in_server(200) as server:
        closed_port = server.port
    down = run_check(command, closed_port)
    assert down.returncode != 0, f"{what}: the check passed with nothing listening on PORT"

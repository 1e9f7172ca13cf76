"""The proxy's pooled aiohttp session, against small real HTTP servers in this process."""

import asyncio
import gzip
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

import aiohttp
import pytest

from src.proxy.backends import create_session
from tests.stub_servers import stub_http_server
from tooling.processes import free_port


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers with what it received; sets a cookie and compresses when asked to."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        received = self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps(
            {
                "body": received.decode(),
                "content_type": self.headers["Content-Type"],
                "request_id": self.headers["X-Request-ID"],
                "cookie": self.headers.get("Cookie"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "session=from-backend; Path=/")
        if self.path == "/gzip":
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _HalfAnswerHandler(BaseHTTPRequestHandler):
    """Promises a body, sends part of it and hangs up."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b'{"trunc')
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args):
        pass


async def _post(session: aiohttp.ClientSession, url: str) -> tuple[int, dict, dict]:
    """Status, headers and JSON body of one POST as the fan-out sends it."""
    headers = {"X-Request-ID": "trace-1", "Content-Type": "application/json"}
    async with session.post(url, data=b'{"data": [[1, 2, 3, 4]]}', headers=headers) as response:
        return response.status, dict(response.headers), json.loads(await response.read())


def _post_in_turn(handler: type[BaseHTTPRequestHandler], *paths: str):
    """The answers to one POST per path, in turn, through one session; and its cookies."""

    async def scenario():
        with stub_http_server(handler) as base_url:
            async with create_session(max_connections=4, keepalive_seconds=5) as session:
                answers = [await _post(session, base_url + path) for path in paths]
                return answers, len(session.cookie_jar)

    return asyncio.run(scenario())


def test_the_body_and_headers_arrive_and_the_answer_comes_back():
    (plain, compressed), _ = _post_in_turn(_EchoHandler, "/plain", "/gzip")
    status, headers, body = plain
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert body["body"] == '{"data": [[1, 2, 3, 4]]}'
    assert body["content_type"] == "application/json"
    assert body["request_id"] == "trace-1"
    # A compressed answer is decoded, exactly once.
    assert compressed[2] == body


def test_a_backend_cookie_is_never_sent_on_a_later_request():
    # One client serves every caller of the proxy: a cookie must not leak between them.
    (first, second), cookies_kept = _post_in_turn(_EchoHandler, "/plain", "/plain")
    assert "session=from-backend" in first[1]["Set-Cookie"]
    assert second[2]["cookie"] is None
    assert cookies_kept == 0


# Backends reports every aiohttp.ClientError as "unreachable".
def test_a_refused_connection_is_a_client_error():
    async def scenario():
        async with create_session(max_connections=4, keepalive_seconds=5) as session:
            await _post(session, f"http://127.0.0.1:{free_port()}/predict")

    with pytest.raises(aiohttp.ClientConnectionError):
        asyncio.run(scenario())


def test_an_answer_cut_off_midway_is_a_client_error():
    with pytest.raises(aiohttp.ClientPayloadError):
        _post_in_turn(_HalfAnswerHandler, "/predict")


def test_an_idle_pooled_connection_is_closed_after_the_keepalive():
    # The client must hang up first; a server closing an idle connection races the
    # client's next request on it (seen as failed fan-out calls in bench_proxy.py).
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    closed_after: list[float] = []

    def serve_one_connection() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(10)
            connection.recv(65536)
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            )
            answered = time.monotonic()
            if connection.recv(65536) == b"":  # the client closed its end
                closed_after.append(time.monotonic() - answered)

    server = threading.Thread(target=serve_one_connection, daemon=True)
    server.start()

    async def scenario():
        async with create_session(max_connections=4, keepalive_seconds=0.3) as session:
            _, _, body = await _post(session, f"http://127.0.0.1:{port}/predict")
            assert body == {}
            await asyncio.sleep(2)  # the pool's clean-up runs on this loop

    try:
        asyncio.run(scenario())
        server.join(5)
    finally:
        listener.close()
    assert closed_after, "the pooled connection stayed open"
    assert closed_after[0] < 1.5

"""Small HTTP servers in a thread of the test process, for backends that misbehave on purpose."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def stub_http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free port of 127.0.0.1; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class JsonStubHandler(BaseHTTPRequestHandler):
    """A stub backend's base: answers JSON bodies and keeps the test output quiet.

    As a class service of an iris model it tells its input (`GET /v2/models/<name>`),
    which a proxy asks before it serves; any other GET is a 404.
    """

    def do_GET(self):  # noqa: N802 (the stdlib's naming)
        if not self.path.startswith("/v2/models/"):
            self.send_json(b'{"error": "not found"}', 404)
            return
        metadata = {
            "name": self.path.removeprefix("/v2/models/"),
            "platform": "stub",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
        }
        self.send_json(json.dumps(metadata).encode())

    def send_json(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

"""Overload and hostile clients against real processes: admission, deadlines, body limits,
slow headers (src/admission.py, src/connections.py).

Timings are only compared by wide margins: the machine is shared.
"""

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest

from tests.metrics import metric_value
from tests.stub_servers import JsonStubHandler, stub_http_server

ROW = [6.5, 3.0, 5.5, 1.8]


class _StubService(JsonStubHandler):
    """A class service stand-in: answers `status` after `delay` s, records deadline headers."""

    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    status = 200
    delay = 0.0
    retry_after = False
    deadlines: list[str]

    def do_POST(self):  # noqa: N802 (the stdlib's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.deadlines.append(self.headers.get("X-Request-Timeout-Ms", ""))
        time.sleep(self.delay)
        body = json.dumps({"prediction": [0.9, 0.1], "predictions": [[0.9, 0.1]]}).encode()
        self.send_json(body, self.status, {"Retry-After": "1"} if self.retry_after else None)


@pytest.fixture
def stub():
    handler = type("Stub", (_StubService,), {"deadlines": []})
    with stub_http_server(handler) as url:
        yield handler, url


def start_proxy(processes, backend_url: str, **settings: str):
    return processes.start_http("proxy", ["src.proxy"], {"SERVICE_ODD": backend_url, **settings})


def start_service(processes, **settings: str):
    return processes.start_http("setosa", ["src.services"], {"MODE": "setosa", **settings})


def raw_connection(process) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", process.port), timeout=10)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 answer read off a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """True when the peer closes the connection (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


HUGE = 200 * 1024 * 1024


@pytest.mark.parametrize("start", [start_service, "proxy"])
def test_a_huge_content_length_gets_413_at_once_without_the_body_being_read(processes, stub, start):
    process = (
        start_service(processes) if start is start_service else start_proxy(processes, stub[1])
    )
    sock = raw_connection(process)
    started = time.perf_counter()
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {HUGE}\r\n\r\n".encode()
        + b'{"data": ['
        + b"[1,2,3,4]," * 100
    )
    status, headers, body = read_response(sock)
    elapsed = time.perf_counter() - started
    assert status == 413
    assert json.loads(body)["error"].startswith("request body too large: more than MAX_BODY_BYTES")
    assert headers["connection"] == "close"
    assert elapsed < 2
    # Closed: the other 200 MB are never read.
    assert closed_by_peer(sock, within=5)
    assert metric_value(process.base_url, "admission_refused_total", reason="body_too_large") == 1


def test_a_chunked_body_gets_413_once_it_passes_the_limit(processes):
    service = start_service(processes, MAX_BODY_BYTES="20000")
    sock = raw_connection(service)
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"[1,2,3,4]," * 1000  # 10 kB a chunk: the third passes the limit
    for _ in range(3):
        sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    # No final chunk: the client would go on, but is answered already.
    status, headers, body = read_response(sock)
    assert status == 413
    assert json.loads(body)["error"].startswith("request body too large")
    assert closed_by_peer(sock, within=5)
    # A body within the limit is still served on a new connection.
    assert (
        httpx.post(
            service.base_url + "/predict",
            json={"data": [ROW]},
            headers={"Content-Type": "application/json"},
        ).status_code
        == 200
    )


def test_half_open_connections_are_closed_after_the_header_timeout(processes):
    service = start_service(processes, HEADER_TIMEOUT="1")
    sockets = []
    for _ in range(50):
        sock = raw_connection(service)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le")
        sockets.append(sock)
    # Meanwhile requests that send their headers are served as usual.
    assert httpx.get(service.base_url + "/predict/test").status_code == 200
    started = time.monotonic()
    assert all(closed_by_peer(sock, within=5) for sock in sockets)
    assert time.monotonic() - started < 4
    # A connection that sends nothing at all is closed too.
    idle = raw_connection(service)
    assert closed_by_peer(idle, within=5)


def test_connections_beyond_max_connections_are_closed_at_once(processes):
    service = start_service(processes, MAX_CONNECTIONS="5", HEADER_TIMEOUT="30")
    held = [raw_connection(service) for _ in range(5)]
    time.sleep(0.3)
    extra = raw_connection(service)
    assert closed_by_peer(extra, within=3)
    for sock in held:
        sock.close()
    time.sleep(0.3)
    assert httpx.get(service.base_url + "/health").status_code == 200
    assert service.log().count("closing new connections") == 1


def test_the_proxy_refuses_what_it_has_no_room_for_with_503_and_retry_after(processes, stub):
    handler, url = stub
    handler.delay = 1.0
    proxy = start_proxy(processes, url, MAX_IN_FLIGHT="2", ADMISSION_WAIT="0.05")

    async def ten_at_once():
        async with httpx.AsyncClient(timeout=20) as client:

            async def one():
                started = time.perf_counter()
                response = await client.post(proxy.base_url + "/predict", json={"data": [ROW]})
                return response, time.perf_counter() - started

            return await asyncio.gather(*(one() for _ in range(10)))

    answers = asyncio.run(ten_at_once())
    answered = [response for response, _ in answers if response.status_code == 200]
    refused = [(response, took) for response, took in answers if response.status_code == 503]
    assert len(answered) == 2
    assert len(refused) == 8
    for response, took in refused:
        assert response.json() == {"error": "proxy overloaded"}
        assert response.headers["Retry-After"] == "1"
        assert took < 0.9  # well before the admitted ones' 1 s
    assert metric_value(proxy.base_url, "admission_refused_total", reason="overloaded") == 8
    assert metric_value(proxy.base_url, "admission_admitted_total") >= 2
    assert metric_value(proxy.base_url, "admission_in_flight") == 0
    # Probes are never refused, and the log has one line per change of state.
    assert httpx.get(proxy.base_url + "/health").status_code == 200
    log = proxy.log()
    assert log.count("proxy overloaded") == 1
    assert log.count("proxy admitting again") == 1
    assert "POST /predict 503" not in log


def test_a_service_drops_work_whose_caller_has_given_up(processes):
    service = start_service(processes)
    late = httpx.post(
        service.base_url + "/predict", json={"data": [ROW]}, headers={"X-Request-Timeout-Ms": "0"}
    )
    assert late.status_code == 504
    assert late.json()["error"].startswith("deadline exceeded")
    in_time = httpx.post(
        service.base_url + "/predict",
        json={"data": [ROW]},
        headers={"X-Request-Timeout-Ms": "5000"},
    )
    assert in_time.status_code == 200
    assert metric_value(service.base_url, "admission_refused_total", reason="deadline") == 1


def test_the_callers_deadline_bounds_the_backend_call_and_does_not_open_the_circuit(
    processes, stub
):
    handler, url = stub
    handler.delay = 1.0
    proxy = start_proxy(
        processes, url, BACKEND_TIMEOUT="5", BREAKER_FAILURE_THRESHOLD="2", BREAKER_COOLDOWN="60"
    )
    for _ in range(4):
        started = time.perf_counter()
        response = httpx.post(
            proxy.base_url + "/predict",
            json={"data": [ROW]},
            headers={"X-Request-Timeout-Ms": "300"},
            timeout=10,
        )
        assert time.perf_counter() - started < 0.9
        # Its only service ran out of the caller's time: no answer, but not its fault.
        assert response.status_code == 503
        assert response.json()["services"]["odd"]["error"] == "deadline"
    assert all(0 < int(value) <= 300 for value in handler.deadlines)
    health = httpx.get(proxy.base_url + "/health/all", timeout=10).json()
    assert health["odd"]["circuit"] == "closed"
    # Without the header the proxy's own BACKEND_TIMEOUT is sent on.
    handler.delay = 0.0
    assert httpx.post(proxy.base_url + "/predict", json={"data": [ROW]}).status_code == 200
    assert handler.deadlines[-1] == "5000"


def test_a_service_refusing_as_overloaded_does_not_open_its_circuit(processes, stub):
    handler, url = stub
    handler.status, handler.retry_after = 503, True
    proxy = start_proxy(processes, url, BREAKER_FAILURE_THRESHOLD="2", BREAKER_COOLDOWN="60")
    for _ in range(5):
        response = httpx.post(proxy.base_url + "/predict", json={"data": [ROW]})
        assert response.json()["services"]["odd"]["error"] == "overloaded"
    assert len(handler.deadlines) == 5  # every call was made: the circuit never opened
    assert metric_value(proxy.base_url, "proxy_backend_circuit_state", service="odd") == 0
    # A plain 503 (no Retry-After) is a failure like any other, and opens it.
    handler.retry_after = False
    for _ in range(3):
        httpx.post(proxy.base_url + "/predict", json={"data": [ROW]})
    assert metric_value(proxy.base_url, "proxy_backend_circuit_state", service="odd") == 2

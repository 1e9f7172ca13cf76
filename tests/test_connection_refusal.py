"""The connection's own refusal (src/connections.py): when the admission gate and its queue
are full, the 503 is written straight from the request's headers, in the bytes the app
would have answered, and the connection goes on (or is closed when it cannot).
"""

import json
import socket
import threading
import time

import httpx

from tests.metrics import metric_value
from tests.test_admission import (
    ROW,
    closed_by_peer,
    raw_connection,
    read_response,
    start_proxy,
    stub,  # noqa: F401 (a fixture)
)

BODY = json.dumps({"data": [ROW]}).encode()


def post(body: bytes = BODY, *extra: bytes) -> bytes:
    return (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + b"".join(extra)
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def raw_answer(sock: socket.socket) -> bytes:
    """One answer's bytes, with its Date header (the only part that moves) cut out."""
    status, headers, body = read_response(sock)
    headers.pop("date")
    return json.dumps([status, headers, body.decode()]).encode()


def pipelined_statuses(sock: socket.socket, count: int) -> list[int]:
    """The statuses of `count` answers in a row; read through one buffer, so none is lost."""
    reader = sock.makefile("rb")
    statuses = []
    for _ in range(count):
        statuses.append(int(reader.readline().split()[1]))
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        reader.read(length)
    return statuses


def fill_the_gate(proxy) -> threading.Thread:
    """One request in flight (the stub answers it after its delay), in the background."""
    admitted = threading.Thread(
        target=httpx.post, args=(proxy.base_url + "/predict",), kwargs={"json": {"data": [ROW]}}
    )
    admitted.start()
    deadline = time.monotonic() + 5
    while metric_value(proxy.base_url, "admission_in_flight") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return admitted


def test_a_full_queue_is_refused_by_the_connection_in_the_apps_own_bytes(processes, stub):  # noqa: F811
    handler, url = stub
    handler.delay = 1.5
    proxy = start_proxy(
        processes, url, MAX_IN_FLIGHT="1", ADMISSION_QUEUE="1", ADMISSION_WAIT="0.5"
    )
    admitted = fill_the_gate(proxy)
    # The queue's one place: refused by the app once ADMISSION_WAIT has passed.
    queued = raw_connection(proxy)
    queued.sendall(post())
    time.sleep(0.1)
    # The queue is full: refused by the connection, at once.
    flooding = raw_connection(proxy)
    started = time.perf_counter()
    flooding.sendall(post())
    by_connection = raw_answer(flooding)
    refused_in = time.perf_counter() - started
    by_app = raw_answer(queued)
    admitted.join()
    assert by_connection == by_app
    status, headers, body = json.loads(by_app)
    assert (status, headers["retry-after"], json.loads(body)) == (
        503,
        "1",
        {"error": "proxy overloaded"},
    )
    assert "connection" not in headers  # kept alive
    assert refused_in < 0.4  # well before the queued one's ADMISSION_WAIT
    assert metric_value(proxy.base_url, "admission_refused_total", reason="overloaded") == 2
    assert proxy.log().count("proxy overloaded") == 1


def test_a_refused_connection_stays_usable_and_its_body_is_skipped(processes, stub):  # noqa: F811
    handler, url = stub
    handler.delay = 1.0
    proxy = start_proxy(processes, url, MAX_IN_FLIGHT="1", ADMISSION_QUEUE="0")
    admitted = fill_the_gate(proxy)
    sock = raw_connection(proxy)
    # Pipelined: a refused request with a body, a probe, then a refused one again.
    sock.sendall(post() + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + post())
    assert pipelined_statuses(sock, 3) == [503, 200, 503]  # probes are never refused
    admitted.join()
    # Room again: the same connection is served.
    sock.sendall(post())
    status, _, body = read_response(sock)
    assert status == 200, body
    assert metric_value(proxy.base_url, "admission_refused_total", reason="overloaded") == 2


def test_a_refusal_closes_what_cannot_be_kept_alive(processes, stub):  # noqa: F811
    handler, url = stub
    handler.delay = 1.5
    proxy = start_proxy(processes, url, MAX_IN_FLIGHT="1", ADMISSION_QUEUE="0")
    admitted = fill_the_gate(proxy)
    chunked = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(BODY):x}\r\n".encode() + BODY + b"\r\n"
    )
    http_10 = post().replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    for request in (chunked, http_10, post(BODY, b"Connection: close\r\n")):
        sock = raw_connection(proxy)
        sock.sendall(request)
        status, headers, _ = read_response(sock)
        assert (status, headers["connection"]) == (503, "close")
        assert closed_by_peer(sock, within=3)
    admitted.join()

"""The proxy's circuit breakers and hard dependencies, against real processes.

Timings are only compared with BACKEND_TIMEOUT by a wide margin: the machine is shared.
"""

import asyncio
import json
import signal
import threading
import time

import httpx
import pytest

from tests.health import healthy_entry
from tests.metrics import metric_value
from tests.stub_servers import JsonStubHandler, stub_http_server
from tooling.processes import CLASSES, start_horizontal_suite

ROW = [6.5, 3.0, 5.5, 1.8]
TIMEOUT = 1.0


def label(base_url: str, **kwargs) -> httpx.Response:
    return httpx.post(base_url + "/predict/label", json={"data": [ROW]}, timeout=10, **kwargs)


def timeouts_logged(log: str, service: str) -> int:
    return log.count(f"backend {service} failed (timeout)")


def wait_for(condition, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s")


def test_a_frozen_service_is_skipped_after_n_timeouts_and_back_after_the_cooldown(processes):
    suite = start_horizontal_suite(
        processes,
        {
            "BACKEND_TIMEOUT": str(TIMEOUT),
            "BREAKER_FAILURE_THRESHOLD": "3",
            "BREAKER_COOLDOWN": "6",
        },
    )
    base = suite.proxy.base_url
    frozen = suite.services["virginica"]
    frozen.signal(signal.SIGSTOP)
    try:
        for _ in range(3):
            response = label(base)
            assert response.status_code == 200
            assert response.json()["unavailable"] == ["virginica"]
        assert timeouts_logged(suite.proxy.log(), "virginica") == 3

        # Open: answered at once, virginica named, no call and so no new timeout.
        for _ in range(10):
            started = time.perf_counter()
            response = label(base)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200
            assert response.json()["unavailable"] == ["virginica"]
            assert elapsed < TIMEOUT / 2
        predicted = httpx.post(base + "/predict", json={"data": [ROW]}).json()
        assert predicted["virginica"]["error"] == "circuit_open"
        assert predicted["setosa"]["prediction"]
        health = httpx.get(base + "/health/all")
        assert health.status_code == 200
        assert health.json()["virginica"]["circuit"] == "open"
        assert health.json()["virginica"]["error"] == "circuit_open"
        assert health.json()["setosa"] == healthy_entry("setosa")
        assert timeouts_logged(suite.proxy.log(), "virginica") == 3
        assert metric_value(base, "proxy_backend_circuit_state", service="virginica") == 2
        assert metric_value(base, "proxy_backend_circuit_state", service="setosa") == 0
        skipped = metric_value(base, "proxy_backend_short_circuited_total", service="virginica")
        assert skipped >= 12
    finally:
        frozen.signal(signal.SIGCONT)

    # Thawed: within the cool-down and one trial it is answering again.
    def back() -> bool:
        return label(base).json()["unavailable"] == []

    wait_for(back, timeout=6 + TIMEOUT + 5)
    assert metric_value(base, "proxy_backend_circuit_state", service="virginica") == 0
    log = suite.proxy.log()
    # One line per change, not one per request.
    assert log.count("circuit of virginica closed -> open") == 1
    assert log.count("circuit of virginica half_open -> closed") == 1
    assert "circuit of setosa" not in log


class _CountingHandler(JsonStubHandler):
    """A class service stand-in: answers `status` (500 at first), after `delay` seconds."""

    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    requests = 0
    status = 500
    delay = 0.0

    def do_POST(self):  # noqa: N802 (the stdlib's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            type(self).requests += 1
        time.sleep(self.delay)
        body = json.dumps({"prediction": [0.9, 0.1], "predictions": [[0.9, 0.1]]}).encode()
        self.send_json(body, self.status)


@pytest.fixture
def counting_backend():
    handler = type("Counting", (_CountingHandler,), {"requests": 0, "status": 500, "delay": 0.0})
    with stub_http_server(handler) as url:
        yield handler, url


def start_proxy_with_stub(processes, stub_url: str, **settings: str):
    setosa = processes.start_http("setosa", ["src.services"], {"MODE": "setosa"})
    env = {"SERVICE_SETOSA": setosa.base_url, "SERVICE_ODD": stub_url, **settings}
    return processes.start_http("proxy", ["src.proxy"], env)


def test_a_service_answering_500_opens_its_circuit(processes, counting_backend):
    handler, url = counting_backend
    proxy = start_proxy_with_stub(
        processes, url, BREAKER_FAILURE_THRESHOLD="3", BREAKER_COOLDOWN="60"
    )
    answers = [httpx.post(proxy.base_url + "/predict", json={"data": [ROW]}) for _ in range(10)]
    assert all(answer.status_code == 200 for answer in answers)
    errors = [answer.json()["odd"]["error"] for answer in answers]
    assert errors == ["bad_status"] * 3 + ["circuit_open"] * 7
    assert handler.requests == 3
    assert metric_value(proxy.base_url, "proxy_backend_short_circuited_total", service="odd") == 7


def test_half_open_lets_exactly_one_trial_through_under_concurrency(processes, counting_backend):
    handler, url = counting_backend
    # Room for all fifty at once: this is about the breaker, not admission control.
    proxy = start_proxy_with_stub(
        processes, url, BREAKER_FAILURE_THRESHOLD="2", BREAKER_COOLDOWN="1", MAX_IN_FLIGHT="64"
    )
    for _ in range(2):
        label(proxy.base_url)
    assert handler.requests == 2
    # Recovered, but slow: the trial is still out while the other requests arrive.
    handler.status, handler.delay, handler.requests = 200, 1.0, 0
    time.sleep(1.5)

    async def fifty_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=20) as client:
            return await asyncio.gather(
                *(client.post(proxy.base_url + "/predict", json={"data": [ROW]}) for _ in range(50))
            )

    answers = asyncio.run(fifty_at_once())
    assert handler.requests == 1
    assert all(answer.status_code == 200 for answer in answers)
    odd = [answer.json()["odd"] for answer in answers]
    assert sum("prediction" in entry for entry in odd) == 1
    assert sum(entry.get("error") == "circuit_open" for entry in odd) == 49
    # The trial succeeded: the circuit is closed and every call goes through again.
    assert httpx.get(proxy.base_url + "/health/all").json()["odd"]["circuit"] == "closed"
    label(proxy.base_url)
    assert handler.requests == 2


@pytest.fixture
def hard_virginica_suite(processes):
    return start_horizontal_suite(
        processes,
        {
            "BACKEND_TIMEOUT": "0.5",
            "HARD_DEPENDENCIES": "virginica",
            "BREAKER_FAILURE_THRESHOLD": "2",
            "BREAKER_COOLDOWN": "60",
        },
    )


def degraded(base: str, answer: str) -> float:
    return metric_value(base, "proxy_degraded_answers_total", answer=answer)


def test_a_soft_service_down_still_answers_200_counted_as_degraded(hard_virginica_suite):
    suite = hard_virginica_suite
    base = suite.proxy.base_url
    assert label(base).json()["unavailable"] == []
    assert degraded(base, "label") == 0
    suite.services["setosa"].signal(signal.SIGKILL)
    suite.services["setosa"].popen.wait(10)
    response = label(base)
    assert response.status_code == 200
    assert response.json()["unavailable"] == ["setosa"]
    assert httpx.post(base + "/predict", json={"data": [ROW]}).status_code == 200
    assert (degraded(base, "label"), degraded(base, "keyed")) == (1, 1)


def test_a_hard_dependency_down_is_503_naming_it(hard_virginica_suite):
    suite = hard_virginica_suite
    base = suite.proxy.base_url
    suite.services["virginica"].signal(signal.SIGKILL)
    suite.services["virginica"].popen.wait(10)
    calls = [
        ("POST", "/predict/label", {"data": [ROW]}),
        ("POST", "/predict", {"data": [ROW]}),
        ("GET", "/predict/get/test", None),
        ("POST", "/predict/post/test", None),
    ]
    for method, path, body in calls:
        response = httpx.request(method, base + path, json=body)
        assert response.status_code == 503, path
        answer = response.json()
        assert answer["error"] == "required service failed: virginica"
        assert answer["required"] == ["virginica"]
        assert answer["unavailable"] == ["virginica"]
        assert answer["services"]["virginica"]["error"] in ("unreachable", "circuit_open")
    # By now its circuit is open: still 503, and the entry says why no call was made.
    response = label(base)
    assert response.status_code == 503
    assert response.json()["services"]["virginica"]["error"] == "circuit_open"
    health = httpx.get(base + "/health/all")
    assert health.status_code == 503
    assert health.json()["virginica"]["circuit"] == "open"
    assert set(health.json()) == set(CLASSES)
    # A 503 is an error, not a degraded answer.
    assert degraded(base, "label") == degraded(base, "keyed") == 0


def test_a_per_service_timeout_overrides_the_global_one(processes):
    suite = start_horizontal_suite(
        processes, {"BACKEND_TIMEOUT": "5", "BACKEND_TIMEOUTS": "versicolor=0.3"}
    )
    base = suite.proxy.base_url
    metadata = httpx.get(base + "/metadata").json()
    assert metadata["backend_timeouts_seconds"] == {
        "setosa": 5.0,
        "versicolor": 0.3,
        "virginica": 5.0,
    }
    suite.services["versicolor"].signal(signal.SIGSTOP)
    try:
        started = time.perf_counter()
        response = label(base)
        elapsed = time.perf_counter() - started
    finally:
        suite.services["versicolor"].signal(signal.SIGCONT)
    assert response.json()["unavailable"] == ["versicolor"]
    assert elapsed < 2.5  # its own 0.3 s, far from the global 5 s
    assert "no answer from" in suite.proxy.log() and "in 0.3s" in suite.proxy.log()


def test_a_hard_dependency_that_is_not_a_backend_stops_the_proxy_at_start(processes):
    proxy = processes.start("proxy", ["src.proxy"], {"HARD_DEPENDENCIES": "setosa,nope"})
    assert proxy.popen.wait(30) == 2
    assert "HARD_DEPENDENCIES names nope, not a backend" in proxy.log()
    assert "Traceback" not in proxy.log()

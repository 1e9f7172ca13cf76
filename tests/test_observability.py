"""Metrics, request ids and log lines of real processes."""

import json
import signal

import httpx

from tests.batch_support import wait_for_log
from tests.metrics import metric_value
from tooling.processes import CLASSES

ROW = {"data": [[5.1, 3.5, 1.4, 0.2]]}


def test_request_counters_and_latency_histograms_rise(suite):
    service = suite.services["setosa"].base_url
    labels = {"route": "/predict", "method": "POST", "status": "200"}
    before = metric_value(service, "http_requests_total", **labels)
    latency_before = metric_value(
        service, "http_request_duration_seconds_count", route="/predict", method="POST"
    )
    for _ in range(3):
        httpx.post(service + "/predict", json=ROW)
    assert metric_value(service, "http_requests_total", **labels) == before + 3
    assert (
        metric_value(
            service, "http_request_duration_seconds_count", route="/predict", method="POST"
        )
        == latency_before + 3
    )
    rejected = {"route": "/predict", "method": "POST", "status": "422"}
    before_422 = metric_value(service, "http_requests_total", **rejected)
    httpx.post(service + "/predict", json={"data": []})
    assert metric_value(service, "http_requests_total", **rejected) == before_422 + 1


def test_proxy_times_every_backend_call(suite):
    proxy = suite.proxy.base_url
    before = {
        name: metric_value(proxy, "proxy_backend_request_duration_seconds_count", service=name)
        for name in CLASSES
    }
    httpx.post(proxy + "/predict/label", json=ROW)
    for name in CLASSES:
        after = metric_value(proxy, "proxy_backend_request_duration_seconds_count", service=name)
        assert after == before[name] + 1


def test_a_failed_backend_shows_in_the_proxy_failure_counter(own_suite):
    proxy = own_suite.proxy.base_url
    labels = {"service": "virginica", "reason": "unreachable"}
    assert metric_value(proxy, "proxy_backend_failures_total", **labels) == 0
    own_suite.services["virginica"].signal(signal.SIGKILL)
    own_suite.services["virginica"].popen.wait(10)
    httpx.post(proxy + "/predict", json=ROW)
    httpx.post(proxy + "/predict/label", json=ROW)
    assert metric_value(proxy, "proxy_backend_failures_total", **labels) == 2
    assert metric_value(proxy, "proxy_backend_failures_total", service="setosa") == 0


def test_the_proxy_makes_a_request_id_when_the_caller_sends_none(suite):
    response = httpx.post(suite.proxy.base_url + "/predict", json=ROW)
    request_id = response.headers["X-Request-ID"]
    assert len(request_id) == 32
    # Each process logs its access line once the response is sent: it may trail the answer.
    for service in suite.services.values():
        wait_for_log(service, f"[{request_id}] POST /predict 200", timeout=10)


def test_a_service_returns_the_callers_request_id(suite):
    response = httpx.post(
        suite.services["virginica"].base_url + "/predict",
        json=ROW,
        headers={"X-Request-ID": "direct-call-1"},
    )
    assert response.headers["X-Request-ID"] == "direct-call-1"


def test_unsafe_request_ids_are_replaced(suite):
    response = httpx.post(
        suite.proxy.base_url + "/predict", json=ROW, headers={"X-Request-ID": "a b\tc"}
    )
    assert response.headers["X-Request-ID"] != "a b\tc"
    assert len(response.headers["X-Request-ID"]) == 32


def test_json_logs_carry_one_line_per_request(processes):
    service = processes.start_http(
        "json-logs", ["src.services"], {"MODE": "setosa", "LOG_FORMAT": "json"}
    )
    httpx.post(service.base_url + "/predict", json=ROW, headers={"X-Request-ID": "json-42"})
    wait_for_log(service, "json-42", timeout=10)
    entries = [json.loads(line) for line in service.log().splitlines() if line.startswith("{")]
    assert entries, service.log()
    (access,) = [entry for entry in entries if entry["request_id"] == "json-42"]
    assert access["method"] == "POST" and access["path"] == "/predict"
    assert access["status"] == 200 and access["duration_ms"] > 0
    assert access["level"] == "INFO"

"""Two real setosa services behind one proxy (127.0.0.2 and 127.0.0.3, one port), under load.

One replica killed or stopped with SIGTERM while requests flow: the proxy makes the calls
that reach it again on the other replica, so no request fails and none is degraded.
"""

import contextlib
import signal
import time

import httpx
import pytest

from tests.metrics import metric_value
from tooling.load import Load
from tooling.processes import CLASSES, free_port, wait_until_healthy

REPLICA_HOSTS = ("127.0.0.2", "127.0.0.3")
CONCURRENCY = 8


@pytest.fixture
def replicated(processes):
    """Setosa twice, the other classes once, and a proxy listing both setosa replicas."""
    port = free_port()
    setosa = [
        processes.start(f"setosa-{host}", ["src.services"], {"MODE": "setosa", "HOST": host}, port)
        for host in REPLICA_HOSTS
    ]
    others = {
        name: processes.start(f"service-{name}", ["src.services"], {"MODE": name}, free_port())
        for name in CLASSES[1:]
    }
    env = {
        "SERVICE_SETOSA": ",".join(f"http://{host}:{port}" for host in REPLICA_HOSTS),
        **{f"SERVICE_{name.upper()}": process.base_url for name, process in others.items()},
        "BREAKER_FAILURE_THRESHOLD": "3",
    }
    proxy = processes.start("proxy", ["src.proxy"], env, free_port())
    for process in [*others.values(), proxy]:
        wait_until_healthy(process)
    for replica, host in zip(setosa, REPLICA_HOSTS, strict=True):
        _wait_until_healthy_on(replica, f"http://{host}:{port}")
    return proxy, dict(zip(REPLICA_HOSTS, setosa, strict=True)), port


def _wait_until_healthy_on(process, base_url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.alive(), process.log()
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(base_url + "/health", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{process.name} not healthy on {base_url}:\n{process.log()[-2000:]}")


def replica_calls(proxy, host: str, port: int) -> float:
    return metric_value(
        proxy.base_url,
        "proxy_backend_replica_calls_total",
        service="setosa",
        replica=f"{host}:{port}",
    )


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "sigterm"])
def test_a_replica_lost_under_load_costs_no_request(replicated, how):
    proxy, replicas, port = replicated
    with Load(proxy.base_url, CONCURRENCY) as load:
        load.wait_for_requests(200)
        shares = {host: replica_calls(proxy, host, port) for host in REPLICA_HOSTS}
        replicas["127.0.0.2"].signal(how)
        before = load.counts().total
        load.wait_for_requests(before + 400)
        counts = load.stop()
    # Both took calls before (round robin), then only the survivor.
    assert min(shares.values()) >= 0.4 * sum(shares.values()), shares
    assert counts.failed == 0, counts.problems
    assert counts.degraded == 0, counts.problems
    stopped = replicas["127.0.0.2"]
    assert stopped.popen.wait(15) == -how
    if how == signal.SIGTERM:
        # uvicorn's graceful path (requests in flight finished), then the signal re-raised.
        assert "Application shutdown complete" in stopped.log(), stopped.log()[-2000:]
    assert metric_value(proxy.base_url, "proxy_backend_circuit_state", service="setosa") == 0
    assert replica_calls(proxy, "127.0.0.3", port) > shares["127.0.0.3"] + 300

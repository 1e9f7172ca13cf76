"""What the swarm tier does to a stack, measured: shared by its tests and bench/bench_swarm.py.

Each scenario runs `concurrency` clients against the proxy (tooling/load.py), does one
thing to the stack, keeps the load on for `settle` more requests, and returns what the
clients saw. Each leaves every service at its replica count.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import numpy as np

from tooling.load import Counts, Load

SERVICE_IMAGE = "ml-serving-patterns/service"
MAX_ROWS = 10_000
UNSCORED_SQL = "SELECT COUNT(*) FROM items WHERE scored = 0"


@dataclass
class Outcome:
    counts: Counts
    # Rolling update: its duration; lost replica: until its replacement took calls.
    seconds: float
    # The proxy's failed backend calls meanwhile, by "service reason" (why degraded).
    backend_failures: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        failures = ", ".join(f"{key}: {value:g}" for key, value in self.backend_failures.items())
        return f"{self.counts}; backend failures: {failures or 'none'}"


@contextmanager
def measured(stack, concurrency: int) -> Iterator[tuple[Load, dict]]:
    """Load on the proxy, and the proxy's backend failures counted from now on."""
    before = stack.backend_failures()
    failures: dict[str, float] = {}
    with Load(stack.proxy_url, concurrency) as load:
        yield load, failures
    after = stack.backend_failures()
    failures.update(
        {
            key: value - before.get(key, 0.0)
            for key, value in after.items()
            if value > before.get(key, 0.0)
        }
    )


def wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def rolling_update(stack, service: str, image: str, concurrency: int, settle: int) -> Outcome:
    """`docker service update --image` of a class service, under load."""
    with measured(stack, concurrency) as (load, failures):
        load.wait_for_requests(300)
        started = time.monotonic()
        stack.docker(
            "service", "update", "--quiet", "--detach=false", "--image", image,
            stack.service(service), timeout=300,
        )  # fmt: skip
        seconds = time.monotonic() - started
        load.wait_for_requests(load.counts().total + settle)
        counts = load.stop()
    return Outcome(counts, seconds, failures)


def kill_replica(stack, service: str, concurrency: int, settle: int) -> Outcome:
    """`docker kill` of one replica under load, until its replacement takes calls."""
    label = service.removeprefix("service_")
    known = set(stack.replica_calls(label))
    victim = stack.running_containers(service)[0]
    with measured(stack, concurrency) as (load, failures):
        load.wait_for_requests(300)
        killed_at = time.monotonic()
        stack.docker("kill", victim)

        def replacement_called() -> bool:
            calls = stack.replica_calls(label)
            return any(address not in known and value for address, value in calls.items())

        wait_for(replacement_called, 120, "the replacement replica to take calls")
        seconds = time.monotonic() - killed_at
        load.wait_for_requests(load.counts().total + settle)
        counts = load.stop()
    return Outcome(counts, seconds, failures)


def terminate_replica(stack, service: str, concurrency: int, settle: int) -> tuple[Outcome, str]:
    """SIGTERM to one replica under load; also returns the stopped replica's log."""
    victim = stack.running_containers(service)[0]
    with measured(stack, concurrency) as (load, failures):
        load.wait_for_requests(300)
        started = time.monotonic()
        stack.docker("kill", "--signal", "TERM", victim)
        stack.docker("wait", victim, timeout=60)
        seconds = time.monotonic() - started
        load.wait_for_requests(load.counts().total + settle)
        counts = load.stop()
    outcome = Outcome(counts, seconds, failures)
    wait_for(lambda: stack.replicas_running(service) == 2, 120, f"a new {service} replica")
    return outcome, stack.container_logs(victim)


def share_of_calls(stack, service: str, concurrency: int, requests: int) -> dict[str, float]:
    """The proxy's calls per replica of `service` during `requests` requests of steady load."""
    label = service.removeprefix("service_")
    before = stack.replica_calls(label)
    with Load(stack.proxy_url, concurrency) as load:
        load.wait_for_requests(requests)
    after = stack.replica_calls(label)
    current = set(stack.container_address(c) for c in stack.running_containers(service))
    calls = {
        address: value - before.get(address, 0.0)
        for address, value in after.items()
        if address.rsplit(":", 1)[0] in current
    }
    total = sum(calls.values()) or 1.0
    return {address: value / total for address, value in calls.items()}


def register(stack, count: int) -> None:
    rng = np.random.default_rng(count)
    with httpx.Client(base_url=stack.api_url, timeout=120) as client:
        for start in range(0, count, MAX_ROWS):
            rows = rng.uniform(0.1, 8.0, size=(min(MAX_ROWS, count - start), 4)).round(2)
            response = client.post("/predict", json={"data": rows.tolist()})
            assert response.status_code == 200, response.text


def job_split(stack, items: int) -> dict[str, float]:
    """Items each running job replica scored of a backlog of `items` registered now."""
    wait_for(lambda: stack.mysql_count(UNSCORED_SQL) == 0, 120, "an empty backlog")
    before = stack.job_scored()
    register(stack, items)
    wait_for(lambda: stack.mysql_count(UNSCORED_SQL) == 0, 300, "the backlog scored")
    after = stack.job_scored()
    assert set(before) == set(after), "a job replica restarted"
    return {replica: after[replica] - before[replica] for replica in after}


def kill_job_mid_pass(stack, items: int) -> int:
    """A backlog of `items` with the jobs stopped, then two jobs, one killed mid-pass.

    Returns the items still unscored when it was killed; waits until none is.
    """
    stack.docker("service", "scale", "--detach", f"{stack.service('job')}=0")
    wait_for(lambda: not stack.running_containers("job"), 60, "the jobs stopped")
    items_before = stack.mysql_count("SELECT COUNT(*) FROM items")
    register(stack, items)
    stack.docker("service", "scale", "--detach", f"{stack.service('job')}=2")
    wait_for(
        lambda: stack.mysql_count("SELECT COUNT(*) FROM predictions") >= items_before + items // 4,
        300,
        "a quarter of the backlog scored",
        interval=0.2,
    )
    stack.docker("kill", stack.running_containers("job")[0])
    remaining = stack.mysql_count(UNSCORED_SQL)
    wait_for(lambda: stack.mysql_count(UNSCORED_SQL) == 0, 600, "the backlog scored")
    wait_for(lambda: stack.replicas_running("job") == 2, 120, "the job replaced")
    return remaining

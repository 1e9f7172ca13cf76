"""The suite on Docker Swarm with replicas, under load, while replicas are replaced or lost.

One stack for the module (tests/swarm/conftest.py), tests in file order: each leaves two
healthy replicas of every class service and two jobs. Load is 32 concurrent clients on
the proxy's /predict/label (tests/load.py); an answer is degraded when it names an
unavailable class, failed when it is not a 200.
"""

import time

import httpx
import numpy as np
import pytest

from tests.load import Load
from tests.swarm.stack import CLASS_SERVICES, IMAGE_TAG

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

CONCURRENCY = 32
# Requests after each event: enough for a ratio of degraded answers to mean something.
SETTLE_REQUESTS = 1500
SERVICE_IMAGE = "ml-serving-patterns/service"
BACKLOG_ITEMS = 200_000
SPLIT_ITEMS = 50_000
MAX_ROWS = 10_000
UNSCORED_SQL = "SELECT COUNT(*) FROM items WHERE scored = 0"


def wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def register(stack, count: int) -> None:
    rng = np.random.default_rng(count)
    with httpx.Client(base_url=stack.api_url, timeout=120) as client:
        for start in range(0, count, MAX_ROWS):
            rows = rng.uniform(0.1, 8.0, size=(min(MAX_ROWS, count - start), 4)).round(2)
            response = client.post("/predict", json={"data": rows.tolist()})
            assert response.status_code == 200, response.text


def test_the_stack_runs_replicas_of_each_class_service_and_of_the_job(stack):
    for name in CLASS_SERVICES:
        assert stack.replicas_running(name) == 2, stack.status()
    assert stack.replicas_running("job") == 2, stack.status()
    # The one-shot ran to completion under its on-failure policy, and is not restarted.
    migrate = stack.docker(
        "service", "ps", stack.service("migrate"), "--format", "{{.CurrentState}}"
    )
    assert migrate.splitlines()[0].startswith("Complete"), migrate
    for _ in range(12):
        response = httpx.post(
            stack.proxy_url + "/predict/label", json={"data": [[5.1, 3.5, 1.4, 0.2]]}
        )
        assert response.status_code == 200, response.text
        assert response.json()["unavailable"] == []
    calls = stack.replica_calls("setosa")
    assert len([value for value in calls.values() if value > 0]) == 2, calls


def test_a_rolling_update_under_load_fails_nothing(stack):
    new_image = f"{SERVICE_IMAGE}:{IMAGE_TAG}-update"
    stack.docker("tag", f"{SERVICE_IMAGE}:{IMAGE_TAG}", new_image)
    before = set(stack.running_containers("service_setosa"))
    with Load(stack.proxy_url, CONCURRENCY) as load:
        load.wait_for_requests(300)
        started = time.monotonic()
        stack.docker(
            "service", "update", "--quiet", "--detach=false", "--image", new_image,
            stack.service("service_setosa"), timeout=300,
        )  # fmt: skip
        print(f"rolling update of 2 replicas: {time.monotonic() - started:.1f}s")
        load.wait_for_requests(load.counts().total + SETTLE_REQUESTS)
        counts = load.stop()
    print(f"during the rolling update: {counts}")
    after = set(stack.running_containers("service_setosa"))
    assert not before & after, "every replica replaced"
    images = {task["Image"] for task in stack.tasks("service_setosa")}
    assert images == {new_image}, images
    assert counts.failed == 0, counts.problems
    assert counts.degraded <= 0.001 * counts.total, (str(counts), counts.problems)


def test_a_killed_replica_fails_nothing_and_its_replacement_takes_calls(stack):
    known = set(stack.replica_calls("setosa"))
    victim = stack.running_containers("service_setosa")[0]
    with Load(stack.proxy_url, CONCURRENCY) as load:
        load.wait_for_requests(300)
        killed_at = time.monotonic()
        stack.docker("kill", victim)

        def replacement_called():
            calls = stack.replica_calls("setosa")
            return [address for address, value in calls.items() if address not in known and value]

        wait_for(replacement_called, 120, "the replacement replica to take calls")
        print(f"replacement took calls {time.monotonic() - killed_at:.1f}s after the kill")
        assert stack.replicas_running("service_setosa") == 2, stack.status()
        load.wait_for_requests(load.counts().total + SETTLE_REQUESTS)
        counts = load.stop()
    print(f"with a killed replica: {counts}")
    assert counts.failed == 0, counts.problems
    assert counts.degraded <= 0.01 * counts.total, (str(counts), counts.problems)


def test_sigterm_to_a_replica_under_load_loses_nothing_in_flight(stack):
    victim = stack.running_containers("service_versicolor")[0]
    with Load(stack.proxy_url, CONCURRENCY) as load:
        load.wait_for_requests(300)
        stack.docker("kill", "--signal", "TERM", victim)
        stack.docker("wait", victim, timeout=60)
        load.wait_for_requests(load.counts().total + SETTLE_REQUESTS)
        counts = load.stop()
    print(f"with a replica stopped by SIGTERM: {counts}")
    # Stopped the graceful way: requests in flight answered, then the process ended.
    assert "Application shutdown complete" in stack.container_logs(victim)
    assert counts.failed == 0, counts.problems
    assert counts.degraded <= 0.001 * counts.total, (str(counts), counts.problems)
    wait_for(lambda: stack.replicas_running("service_versicolor") == 2, 120, "a new replica")


def test_two_job_replicas_share_a_backlog_and_score_it_exactly_once(stack):
    wait_for(lambda: stack.mysql_count(UNSCORED_SQL) == 0, 120, "an empty backlog")
    before = stack.job_scored()
    register(stack, SPLIT_ITEMS)
    wait_for(lambda: stack.mysql_count(UNSCORED_SQL) == 0, 300, "the backlog scored")
    after = stack.job_scored()
    assert set(before) == set(after), "no job replica restarted"
    split = {replica: after[replica] - before[replica] for replica in after}
    print(f"backlog of {SPLIT_ITEMS} items split between the jobs: {split}")
    # Each item counted by exactly one replica: none scored twice, none skipped.
    assert sum(split.values()) == SPLIT_ITEMS
    assert min(split.values()) >= 0.25 * SPLIT_ITEMS, split


def test_a_job_replica_killed_mid_pass_leaves_every_item_scored_exactly_once(stack):
    # The whole backlog first, with no job running; then two jobs start on it.
    stack.docker("service", "scale", "--detach", f"{stack.service('job')}=0")
    wait_for(lambda: not stack.running_containers("job"), 60, "the jobs stopped")
    items_before = stack.mysql_count("SELECT COUNT(*) FROM items")
    register(stack, BACKLOG_ITEMS)
    total = items_before + BACKLOG_ITEMS
    assert stack.mysql_count(UNSCORED_SQL) == BACKLOG_ITEMS
    stack.docker("service", "scale", "--detach", f"{stack.service('job')}=2")
    scored_sql = "SELECT COUNT(*) FROM predictions"
    wait_for(
        lambda: stack.mysql_count(scored_sql) >= items_before + BACKLOG_ITEMS // 4,
        300,
        "a quarter of the backlog scored",
        interval=0.2,
    )
    victim = stack.running_containers("job")[0]
    stack.docker("kill", victim)
    remaining = stack.mysql_count(UNSCORED_SQL)
    print(f"job replica killed with {remaining} of {BACKLOG_ITEMS} items unscored")
    assert remaining > 0, "killed mid-pass"
    wait_for(lambda: stack.mysql_count(UNSCORED_SQL) == 0, 600, "the backlog scored")
    assert stack.mysql_count("SELECT COUNT(*) FROM items") == total
    assert stack.mysql_count(scored_sql) == total
    assert stack.mysql_count("SELECT COUNT(DISTINCT item_id) FROM predictions") == total
    wait_for(lambda: stack.replicas_running("job") == 2, 120, "the job replaced")

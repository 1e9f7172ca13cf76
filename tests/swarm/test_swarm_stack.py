"""The suite on Docker Swarm with replicas, under load, while replicas are replaced or lost.

One stack for the module (tests/swarm/conftest.py), tests in file order: each leaves two
healthy replicas of every class service and two jobs. Load is 32 concurrent clients on
the proxy's /predict/label (tooling/load.py); an answer is degraded when it names an
unavailable class, failed when it is not a 200.
"""

import shutil

import httpx
import pytest

from tooling import swarm_scenarios as scenarios
from tooling.load import Load
from tooling.processes import REPO_ROOT
from tooling.swarm_scenarios import SERVICE_IMAGE, UNSCORED_SQL
from tooling.swarm_stack import CLASS_SERVICES, IMAGE_TAG

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

CONCURRENCY = 32
# Requests after each event: enough for a ratio of degraded answers to mean something.
SETTLE_REQUESTS = 1500
BACKLOG_ITEMS = 200_000
SPLIT_ITEMS = 50_000


def test_the_stack_runs_replicas_of_each_class_service_and_of_the_job(stack):
    for name in CLASS_SERVICES:
        assert stack.replicas_running(name) == 2, stack.status()
    assert stack.replicas_running("job") == 2, stack.status()
    # The one-shot ran to completion under its on-failure policy, and is not restarted.
    migrate = stack.docker(
        "service", "ps", stack.service("migrate"), "--format", "{{.CurrentState}}"
    )
    assert migrate.splitlines()[0].startswith("Complete"), migrate
    row = [5.1, 3.5, 1.4, 0.2]
    for _ in range(12):
        response = httpx.post(stack.proxy_url + "/predict/label", json={"data": [row]})
        assert response.status_code == 200, response.text
        assert response.json()["unavailable"] == []
    calls = stack.replica_calls("setosa")
    assert len([value for value in calls.values() if value > 0]) == 2, calls


def test_a_rolling_update_under_load_fails_nothing(stack):
    new_image = f"{SERVICE_IMAGE}:{IMAGE_TAG}-update"
    stack.docker("tag", f"{SERVICE_IMAGE}:{IMAGE_TAG}", new_image)
    before = set(stack.running_containers("service_setosa"))
    outcome = scenarios.rolling_update(
        stack, "service_setosa", new_image, CONCURRENCY, SETTLE_REQUESTS
    )
    counts = outcome.counts
    print(f"rolling update ({outcome.seconds:.1f}s): {outcome}")
    assert not before & set(stack.running_containers("service_setosa")), "all replaced"
    assert {task["Image"] for task in stack.tasks("service_setosa")} == {new_image}
    assert counts.failed == 0, counts.problems
    assert counts.degraded <= 0.001 * counts.total, (str(outcome), counts.problems)


def test_a_killed_replica_fails_nothing_and_its_replacement_takes_calls(stack):
    outcome = scenarios.kill_replica(stack, "service_setosa", CONCURRENCY, SETTLE_REQUESTS)
    counts = outcome.counts
    print(f"killed replica, replacement took calls after {outcome.seconds:.1f}s: {outcome}")
    assert stack.replicas_running("service_setosa") == 2, stack.status()
    assert counts.failed == 0, counts.problems
    assert counts.degraded <= 0.01 * counts.total, (str(outcome), counts.problems)


def test_sigterm_to_a_replica_under_load_loses_nothing_in_flight(stack):
    outcome, log = scenarios.terminate_replica(
        stack, "service_versicolor", CONCURRENCY, SETTLE_REQUESTS
    )
    counts = outcome.counts
    print(f"SIGTERM to a replica (exited in {outcome.seconds:.1f}s): {outcome}")
    # Stopped the graceful way: requests in flight answered, then the process ended.
    assert "Application shutdown complete" in log
    assert counts.failed == 0, counts.problems
    assert counts.degraded <= 0.001 * counts.total, (str(outcome), counts.problems)


def test_calls_are_shared_evenly_between_the_replicas(stack):
    shares = scenarios.share_of_calls(stack, "service_virginica", CONCURRENCY, 1000)
    print(f"share of virginica's calls per replica: {shares}")
    assert len(shares) == 2
    assert min(shares.values()) >= 0.4


def test_a_model_version_rolls_out_on_every_replica_under_load(stack, tmp_path):
    """Version 2 copied into both virginica replicas, loaded on both by one proxy call."""
    version = tmp_path / "2"
    version.mkdir()
    shutil.copy(REPO_ROOT / "models" / "virginica" / "1" / "model.onnx", version / "model.onnx")
    containers = stack.running_containers("service_virginica")
    assert len(containers) == 2, stack.status()
    for container in containers:
        stack.docker("cp", str(version), f"{container}:/app/models/virginica/")
    auth = {"Authorization": f"Bearer {stack.settings['ADMIN_TOKEN']}"}
    with Load(stack.proxy_url, CONCURRENCY) as load:
        load.wait_for_requests(300)
        rollout = httpx.post(
            stack.proxy_url + "/v2/repository/models/virginica/load", headers=auth, timeout=120
        )
        assert rollout.status_code == 200, rollout.text
        assert [body["version"] for body in rollout.json()["replicas"].values()] == ["2", "2"]
        load.expect_version("virginica", "2")
        load.wait_for_requests(load.counts().total + SETTLE_REQUESTS)
        counts = load.stop()
    print(f"model version 2 on both virginica replicas: {counts}")
    assert counts.failed == 0 and counts.degraded == 0 and counts.stale == 0, counts.problems


def test_two_job_replicas_share_a_backlog_and_score_it_exactly_once(stack):
    split = scenarios.job_split(stack, SPLIT_ITEMS)
    print(f"backlog of {SPLIT_ITEMS} items split between the jobs: {split}")
    # Each item counted by exactly one replica: none scored twice, none skipped.
    assert sum(split.values()) == SPLIT_ITEMS
    # Both took a real share. Not half each: the replica that wakes first has the backlog
    # to itself until the other's next pass (BATCH_WAIT_TIME), which on a busy machine
    # can be most of it (seen: 22% and 78%).
    assert min(split.values()) >= 0.15 * SPLIT_ITEMS, split


def test_a_job_replica_killed_mid_pass_leaves_every_item_scored_exactly_once(stack):
    items_before = stack.mysql_count("SELECT COUNT(*) FROM items")
    remaining = scenarios.kill_job_mid_pass(stack, BACKLOG_ITEMS)
    print(f"job replica killed with {remaining} of {BACKLOG_ITEMS} items unscored")
    assert remaining > 0, "killed mid-pass"
    total = items_before + BACKLOG_ITEMS
    assert stack.mysql_count(UNSCORED_SQL) == 0
    assert stack.mysql_count("SELECT COUNT(*) FROM items") == total
    assert stack.mysql_count("SELECT COUNT(*) FROM predictions") == total
    assert stack.mysql_count("SELECT COUNT(DISTINCT item_id) FROM predictions") == total

"""The suite as users start it, `docker compose up`, then broken on purpose.

The tests share one stack (module scope) and run in file order: a clean start first,
then the stack suite against the containers, then a frozen class service, a killed
job, a stopped database, a `down`/`up`, and last `down -v`. Each test leaves the
stack running as it found it.
"""

import asyncio
import shutil
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from tests.metrics import metric_value
from tests.test_monitoring import dashboard_exprs
from tooling.compose_project import BUILT_SERVICES, WARNING_LINE
from tooling.load import Load
from tooling.processes import REPO_ROOT, clean_environment

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]

SAMPLES = {
    "setosa": [5.1, 3.5, 1.4, 0.2],
    "versicolor": [5.9, 3.0, 4.2, 1.5],
    "virginica": [6.5, 3.0, 5.5, 1.8],
}
BACKLOG_ITEMS = 100_000
UNSCORED_SQL = (
    "SELECT COUNT(*) FROM items LEFT JOIN predictions ON predictions.item_id = items.id"
    " WHERE predictions.item_id IS NULL"
)


def proxy_url(project) -> str:
    return f"http://127.0.0.1:{project.settings['PROXY_PORT']}"


def api_url(project) -> str:
    return f"http://127.0.0.1:{project.settings['API_PORT']}"


def wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def health_status(project, service: str) -> str | None:
    health = project.inspect(service)["State"].get("Health")
    return health["Status"] if health else None


def started_at(project, service: str) -> tuple[str, int]:
    inspected = project.inspect(service)
    return inspected["State"]["StartedAt"], inspected["RestartCount"]


def labelled(project) -> dict:
    response = httpx.post(
        proxy_url(project) + "/predict/label", json={"data": list(SAMPLES.values())}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def register(project, rows: list[list[float]]) -> list[int]:
    response = httpx.post(api_url(project) + "/predict", json={"data": rows}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["ids"]


def prediction(project, item_id: int) -> dict | None:
    response = httpx.get(f"{api_url(project)}/predict/id/{item_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["prediction"]


def test_every_healthcheck_reaches_healthy(project):
    checked = {}
    for service in (*BUILT_SERVICES, "mysql"):
        checked[service] = health_status(project, service)
    # The job serves no HTTP, so it alone has no healthcheck.
    assert checked.pop("job") is None
    assert checked == {service: "healthy" for service in checked}


@pytest.mark.parametrize("service", BUILT_SERVICES)
def test_our_containers_run_as_a_non_root_user(project, service):
    uid = project.exec(service, "python", "-c", "import os; print(os.getuid())").strip()
    assert uid != "0", f"{service} runs as root"
    assert project.inspect(service)["Config"]["User"] == uid


def test_the_one_shot_migration_ran_as_non_root_and_succeeded(project):
    inspected = project.inspect("migrate")
    assert inspected["State"]["Status"] == "exited"
    assert inspected["State"]["ExitCode"] == 0, project.logs("migrate")[-3000:]
    assert inspected["Config"]["User"] not in ("", "0", "root")


def test_a_clean_start_logs_no_traceback_and_no_warning(project):
    for service in (*BUILT_SERVICES, "migrate"):
        log = project.logs(service)
        assert "Traceback" not in log, f"{service}:\n{log[-3000:]}"
        warnings = [line for line in log.splitlines() if WARNING_LINE.search(line)]
        assert not warnings, f"{service} logged warnings:\n" + "\n".join(warnings[:20])
    # The database's own start-up is checked for errors only: the official MySQL 8 image
    # warns about its self-signed certificates on every first start.
    database_log = project.logs("mysql")
    assert "[ERROR]" not in database_log, database_log[-3000:]


def test_the_stack_suite_passes_against_the_containers(project):
    env = {
        **clean_environment(),
        "SUITE_PROXY_URL": proxy_url(project),
        "SUITE_API_URL": api_url(project),
        "SUITE_SCORING_TIMEOUT": "60",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/stack", "-q", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


def prometheus_query(project, query: str) -> list[dict]:
    response = httpx.get(
        f"http://127.0.0.1:{project.settings['PROMETHEUS_PORT']}/api/v1/query",
        params={"query": query},
        timeout=30,
    )
    assert response.status_code == 200, (query, response.text)
    return response.json()["data"]["result"]


def test_prometheus_scrapes_every_process_and_evaluates_the_rules(project):
    # Named, Prometheus starts though its profile is off: Grafana, the profile's other
    # service, has no image here (docs/monitoring.md).
    seconds = project.up("prometheus")
    print(f"compose tier: Prometheus up in {seconds:.1f}s")
    api = f"http://127.0.0.1:{project.settings['PROMETHEUS_PORT']}/api/v1"
    try:

        def targets_up() -> dict | None:
            try:
                targets = httpx.get(api + "/targets", timeout=10).json()["data"]
            except httpx.TransportError:
                return None
            active = targets["activeTargets"]
            health = {target["labels"]["instance"]: target["health"] for target in active}
            return health if set(health.values()) == {"up"} and len(health) == 6 else None

        health = wait_for(targets_up, 60, "every target up in Prometheus")
        assert {instance.split(":")[0] for instance in health} == {*BUILT_SERVICES}
        series = {
            "proxy": 'http_requests_total{job="proxy", route="/predict/label"}',
            "services": 'http_requests_total{job="services", route="/predict"}',
            "api": 'http_requests_total{job="api", route="/predict"}',
            "job": 'batch_job_last_pass_timestamp_seconds{job="job"} > 0',
        }
        for job, query in series.items():
            found = prometheus_query(project, query)
            assert found, f"no series of {job}: {query}"
        modes = {entry["metric"]["mode"] for entry in prometheus_query(project, series["services"])}
        assert modes == set(SAMPLES)
        circuits = prometheus_query(project, "proxy_backend_circuit_state")
        assert {entry["metric"]["service"] for entry in circuits} == set(SAMPLES)

        def rules_evaluated() -> list | None:
            groups = httpx.get(api + "/rules", timeout=10).json()["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            return rules if rules and all(rule["health"] == "ok" for rule in rules) else None

        rules = wait_for(rules_evaluated, 30, "the alert rules evaluated")
        assert len(rules) == 6
        firing = [rule["name"] for rule in rules if rule["state"] == "firing"]
        assert firing == [], firing
        for expr in dashboard_exprs():
            prometheus_query(project, expr.replace("$__rate_interval", "1m"))
    finally:
        # Gone with its volume, which `down -v` leaves while the profile is off.
        project.compose("rm", "--stop", "--force", "prometheus")
        project.docker("volume", "rm", f"{project.name}_prometheus-data")


def test_a_paused_class_service_degrades_the_answers_then_comes_back(project):
    assert labelled(project)["unavailable"] == []
    project.compose("pause", "service_virginica")
    try:
        body = labelled(project)
        assert body["unavailable"] == ["virginica"]
        assert [entry["label"] for entry in body["predictions"][:2]] == ["setosa", "versicolor"]
        keyed = httpx.post(
            proxy_url(project) + "/predict", json={"data": [SAMPLES["setosa"]]}, timeout=30
        )
        assert keyed.status_code == 200
        assert keyed.json()["virginica"]["error"]
        assert keyed.json()["setosa"]["prediction"][0] > 0.9
    finally:
        project.compose("unpause", "service_virginica")
    back = wait_for(
        lambda: (body := labelled(project))["unavailable"] == [] and body,
        60,
        "virginica back in the proxy's answers",
    )
    assert [entry["label"] for entry in back["predictions"]] == list(SAMPLES)


SKIPPED = "proxy_backend_short_circuited_total"


def test_an_overload_of_the_proxy_container_is_shed_without_opening_a_circuit(project):
    """A short burst at c=400 from this process (no breakers opened, nothing degraded)."""
    base = proxy_url(project)
    row = {"data": [SAMPLES["virginica"]]}

    async def burst(seconds: float = 4, concurrency: int = 400) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=concurrency)
        answers: list[httpx.Response] = []
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:

            async def client_loop():
                stop = time.monotonic() + seconds
                while time.monotonic() < stop:
                    answers.append(await client.post(base + "/predict/label", json=row))

            await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        return answers

    # Earlier tests of the module pause a service on purpose: only what the burst adds counts.
    opened_before = project.logs("proxy").count("-> open")
    skipped_before = {s: metric_value(base, SKIPPED, service=s) for s in SAMPLES}
    answers = asyncio.run(burst())
    answered = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 503]
    assert len(answered) + len(refused) == len(answers), {a.status_code for a in answers}
    assert answered
    assert all(a.json()["unavailable"] == [] for a in answered)
    for response in refused:
        assert response.json() == {"error": "proxy overloaded"}
        assert response.headers["Retry-After"] == "1"
    print(f"compose tier at c=400: {len(answered)} answered, {len(refused)} refused")
    assert project.logs("proxy").count("-> open") == opened_before
    for service in SAMPLES:
        assert metric_value(base, "proxy_backend_circuit_state", service=service) == 0
        assert metric_value(base, SKIPPED, service=service) == skipped_before[service]


def test_a_new_version_rolls_out_in_the_containers_under_load(project, tmp_path):
    """c=32 on the proxy while setosa's container gets version 2, loaded through the proxy."""
    version = tmp_path / "2"
    version.mkdir()
    shutil.copy(REPO_ROOT / "models" / "setosa" / "1" / "model.onnx", version / "model.onnx")
    container = project.container_id("service_setosa")
    project.docker("cp", str(version), f"{container}:/app/models/setosa/")
    base = proxy_url(project)
    auth = {"Authorization": f"Bearer {project.settings['ADMIN_TOKEN']}"}
    with Load(base, 32) as load:
        load.wait_for_requests(200)
        rollout = httpx.post(base + "/v2/repository/models/setosa/load", headers=auth, timeout=60)
        assert rollout.status_code == 200, rollout.text
        load.expect_version("setosa", "2")
        load.wait_for_requests(load.counts().total + 300)
        counts = load.stop()
    print(f"compose tier rollout at c=32: {counts}")
    assert counts.failed == 0 and counts.degraded == 0 and counts.stale == 0, counts.problems
    assert labelled(project)["model_versions"]["setosa"] == "2"
    assert project.settings["ADMIN_TOKEN"] not in project.logs()


def test_the_job_killed_mid_pass_leaves_each_item_scored_exactly_once(project):
    project.compose("stop", "job")
    scored_before = project.mysql_count("SELECT COUNT(*) FROM predictions")
    rows = np.random.default_rng(7).uniform(0.1, 8, size=(BACKLOG_ITEMS, 4)).round(3).tolist()
    for start in range(0, BACKLOG_ITEMS, 10_000):
        register(project, rows[start : start + 10_000])
    assert project.mysql_count(UNSCORED_SQL) == BACKLOG_ITEMS

    project.compose("start", "job")

    def scored_now() -> int:
        return project.mysql_count("SELECT COUNT(*) FROM predictions") - scored_before

    wait_for(lambda: scored_now() >= 2_000, 120, "the job's pass to begin", interval=0.1)
    project.compose("kill", "--signal", "SIGKILL", "job")
    state = project.inspect("job")["State"]
    scored_at_kill = scored_now()
    assert 0 < scored_at_kill < BACKLOG_ITEMS, f"not mid-pass: {scored_at_kill} scored"
    assert state["ExitCode"] == 137 or state["Running"], state

    project.compose("start", "job")
    wait_for(lambda: project.mysql_count(UNSCORED_SQL) == 0, 300, "the backlog to drain")
    items, rows_scored, distinct_items = project.mysql(
        "SELECT (SELECT COUNT(*) FROM items), COUNT(*), COUNT(DISTINCT item_id) FROM predictions"
    )[0]
    assert int(items) == int(rows_scored) == int(distinct_items)
    assert int(rows_scored) - scored_before == BACKLOG_ITEMS


def test_a_stopped_database_is_503_and_the_stack_recovers_without_restarts(project):
    started = {service: started_at(project, service) for service in ("api", "job")}
    retries_logged = project.logs("job").count("database unreachable")
    project.compose("stop", "mysql")
    try:
        response = httpx.post(
            api_url(project) + "/predict", json={"data": [SAMPLES["setosa"]]}, timeout=30
        )
        assert response.status_code == 503
        assert response.json()["error"] == "database unavailable"
        assert "Traceback" not in response.text
        assert httpx.get(api_url(project) + "/health", timeout=30).status_code == 503
        wait_for(
            lambda: project.logs("job").count("database unreachable") > retries_logged,
            60,
            "the job to log its retries",
        )
        assert project.inspect("job")["State"]["Running"]
    finally:
        project.compose("start", "mysql")
    wait_for(lambda: health_status(project, "mysql") == "healthy", 120, "MySQL healthy again")

    def registered_again() -> int | None:
        response = httpx.post(
            api_url(project) + "/predict", json={"data": [SAMPLES["virginica"]]}, timeout=30
        )
        return response.json()["id"] if response.status_code == 200 else None

    item_id = wait_for(registered_again, 60, "the API to store items again")
    scored = wait_for(lambda: prediction(project, item_id), 120, "the new item to be scored")
    assert max(scored, key=scored.get) == "virginica"
    for service, before in started.items():
        assert started_at(project, service) == before, f"{service} was restarted"


def test_down_and_up_keeps_items_and_predictions_and_ids_continue(project):
    counts = "SELECT (SELECT COUNT(*) FROM items), (SELECT COUNT(*) FROM predictions)"
    before = project.mysql(counts)[0]
    last_id = project.mysql_count("SELECT MAX(id) FROM items")
    assert prediction(project, last_id) is not None

    project.compose("down", "--timeout", "10")
    assert project.project_resources()["containers"] == []
    seconds = project.up()
    print(f"compose tier: `up --wait` on the kept volume took {seconds:.1f}s")

    assert project.mysql(counts)[0] == before
    assert prediction(project, last_id) is not None
    (new_id,) = register(project, [SAMPLES["setosa"]])
    assert new_id > last_id


def test_down_v_leaves_nothing_of_the_project(project):
    project.compose("down", "--volumes", "--timeout", "10")
    assert project.project_resources() == {"containers": [], "networks": [], "volumes": []}

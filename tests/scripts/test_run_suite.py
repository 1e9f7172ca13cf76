"""`make run`'s runner: the compose file's processes, started and stopped for real."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from scripts.run_suite import COMPOSE_FILE, load_processes
from src.db.migrate import head_revision
from tests.stack.runner import PORT_VARIABLES, READY_LINE, start_runner, stop_runner
from tooling.compose_variables import interpolate
from tooling.processes import REPO_ROOT, free_port, port_is_free

COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
BUILT_SERVICES = [name for name, service in COMPOSE["services"].items() if "build" in service]
BUILT_IMAGES = {COMPOSE["services"][name]["image"] for name in BUILT_SERVICES}
# Ours too: run from an image built here (the one-shot migrate runs the api's image).
LOCAL_SERVICES = [
    name for name, service in COMPOSE["services"].items() if service.get("image") in BUILT_IMAGES
]
LONG_RUNNING = [name for name in LOCAL_SERVICES if COMPOSE["services"][name].get("restart") != "no"]


def test_interpolation_follows_compose_rules():
    environ = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}", environ) == "x"
    assert interpolate("${EMPTY:-d}", environ) == "d"
    assert interpolate("${EMPTY-d}", environ) == ""
    assert interpolate("${UNSET-d}", environ) == "d"
    assert interpolate("a${SET}b${UNSET}c", environ) == "axbc"
    assert interpolate("$$HOME", environ) == "$HOME"


def test_runner_starts_exactly_the_compose_services_with_their_commands():
    processes = {process.name: process for process in load_processes({})}
    assert sorted(processes) == sorted(LOCAL_SERVICES)
    assert set(BUILT_SERVICES) < set(LOCAL_SERVICES)
    # Images from elsewhere (mysql, the optional prometheus) are not processes of ours.
    assert "mysql" in set(COMPOSE["services"]) - set(processes)
    for name, process in processes.items():
        compose_command = COMPOSE["services"][name]["command"]
        assert process.command == [
            sys.executable if part == "python" else part for part in compose_command
        ]


def test_the_migration_is_a_one_shot_run_before_the_others():
    processes = {process.name: process for process in load_processes({})}
    assert {name for name, process in processes.items() if process.one_shot} == {"migrate"}
    assert processes["migrate"].command[1:] == ["-m", "src.db", "upgrade"]
    # The same database as the api and the job: the SQLite default when no MySQL is set.
    assert "MYSQL_SERVER" not in processes["migrate"].env


def test_runner_uses_the_published_ports_and_local_addresses():
    processes = {process.name: process for process in load_processes({"PROXY_PORT": "9999"})}
    for name in BUILT_SERVICES:
        for mapping in COMPOSE["services"][name].get("ports", []):
            host_port = interpolate(mapping, {"PROXY_PORT": "9999"}).split(":")[0]
            assert processes[name].env["PORT"] == host_port
    assert processes["proxy"].env["PORT"] == "9999"
    assert processes["proxy"].env["SERVICE_SETOSA"] == "http://127.0.0.1:9101"
    assert processes["service_virginica"].env["MODE"] == "virginica"


def test_runner_keeps_every_variable_compose_sets_except_hosts_it_does_not_run():
    processes = {process.name: process for process in load_processes({})}
    for name, process in processes.items():
        compose_keys = set(COMPOSE["services"][name].get("environment", {}))
        assert compose_keys - set(process.env) <= {"MYSQL_SERVER"}, name
    # No MySQL server here by default: the batch pattern falls back to SQLite.
    assert "MYSQL_SERVER" not in processes["api"].env
    with_mysql = {p.name: p for p in load_processes({"MYSQL_SERVER": "127.0.0.1"})}
    assert with_mysql["api"].env["MYSQL_SERVER"] == "127.0.0.1"
    assert with_mysql["job"].env["MYSQL_SERVER"] == "127.0.0.1"


def _readme_curl_examples() -> list[str]:
    """The curl lines of the README's `make run` section."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Run it on this machine", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.strip().startswith("curl ")]


def _processes_with_marker(marker: str) -> list[int]:
    pids = []
    for environ_file in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ_file.read_bytes():
                pids.append(int(environ_file.parent.name))
        except OSError:
            continue
    return pids


def test_make_run_serves_the_readme_examples_and_stops_cleanly(tmp_path):
    marker = f"RUN_SUITE_TEST_{os.getpid()}_{time.monotonic_ns()}"
    stack = start_runner(tmp_path, {marker: "1"})
    try:
        # The migration ran to its end first, on the runner's database.
        log = stack.log()
        assert "running migrate" in log
        assert log.index(f"schema empty (no tables) -> {head_revision()}") < log.index(READY_LINE)
        # The runner, and under it every long-running compose service's process.
        assert len(_processes_with_marker(marker)) > len(LONG_RUNNING)
        ports = {"9100": stack.env["PROXY_PORT"], "8000": stack.env["API_PORT"]}
        examples = _readme_curl_examples()
        assert len(examples) >= 5
        for example in examples:
            local = re.sub(r"localhost:(9100|8000)", lambda m: f"localhost:{ports[m[1]]}", example)
            result = subprocess.run(
                ["bash", "-c", local + " --fail-with-body --max-time 10"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, (example, result.stdout, result.stderr)
            assert result.stdout.startswith("{"), (example, result.stdout)
    finally:
        exit_code = stop_runner(stack)

    assert exit_code is not None, stack.log()
    deadline = time.monotonic() + 10
    while _processes_with_marker(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with_marker(marker) == [], "orphan processes left behind"
    for name in PORT_VARIABLES:
        assert port_is_free(int(stack.env[name])), f"{name} {stack.env[name]} still taken"


def test_the_wine_compose_file_runs_the_same_processes_on_its_own_model_set():
    wine = {
        process.name: process
        for process in load_processes({}, REPO_ROOT / "docker-compose.wine.yml")
    }
    iris = {process.name for process in load_processes({})}
    assert set(wine) == iris - {"service_setosa", "service_versicolor", "service_virginica"} | {
        "service_class_0",
        "service_class_1",
        "service_class_2",
    }
    assert wine["service_class_2"].env["MODEL_REPOSITORY"] == "models/wine"
    assert wine["proxy"].env["SERVICE_CLASS_2"] == "http://127.0.0.1:9103"
    for name in ("api", "job"):
        assert wine[name].env["MODEL_REPOSITORY"] == "models/wine"
        assert wine[name].env["MODEL_NAME"] == "wine"
        assert wine[name].env["LABEL_FILEPATH"] == "models/wine/label.json"


def test_make_run_serves_a_users_own_model_set_from_compose_file(tmp_path, wine_models):
    """COMPOSE_FILE, as compose reads it: the wine file, its models where the test trained them."""
    text = (REPO_ROOT / "docker-compose.wine.yml").read_text()
    compose_file = tmp_path / "docker-compose.yml"
    compose_file.write_text(text.replace("models/wine", str(wine_models)))
    ports = {f"CLASS_{index}_PORT": str(free_port()) for index in range(3)}
    stack = start_runner(tmp_path, {"COMPOSE_FILE": str(compose_file), **ports})
    sample = json.loads((wine_models / "sample.json").read_text())
    try:
        # The banner's examples carry the model set's own example row.
        assert json.dumps({"data": [sample]}) in stack.log()
        assert httpx.get(stack.proxy_url + "/metadata").json()["data_structure"] == "(N, 13)"
        labelled = httpx.post(stack.proxy_url + "/predict/label", json={"data": [sample]})
        assert labelled.json()["prediction"]["label"] == "class_0"
        registered = httpx.post(stack.api_url + "/predict", json={"data": [sample]}).json()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            item = httpx.get(f"{stack.api_url}/predict/id/{registered['id']}").json()
            if item["prediction"] is not None:
                break
            time.sleep(0.5)
        assert set(item["prediction"]) == {"class_0", "class_1", "class_2"}
        assert item["label"] == "class_0"
    finally:
        stop_runner(stack)


def test_make_run_refuses_a_compose_file_that_is_not_there(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-m", "scripts.run_suite"],
        cwd=REPO_ROOT,
        env={**os.environ, "COMPOSE_FILE": str(tmp_path / "absent.yml")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert finished.returncode == 1
    assert (
        finished.stderr.strip()
        == f"run_suite: COMPOSE_FILE={tmp_path / 'absent.yml'}: no such file"
    )

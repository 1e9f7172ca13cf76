"""`make run`'s runner: the compose file's processes, started and stopped for real."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from scripts.run_suite import COMPOSE_FILE, interpolate, load_processes
from tests.processes import REPO_ROOT, clean_environment, free_port, port_is_free

COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
BUILT_SERVICES = [name for name, service in COMPOSE["services"].items() if "build" in service]


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
    assert sorted(processes) == sorted(BUILT_SERVICES)
    # Images from elsewhere (mysql, the optional prometheus) are not processes of ours.
    assert "mysql" in set(COMPOSE["services"]) - set(processes)
    for name, process in processes.items():
        compose_command = COMPOSE["services"][name]["command"]
        assert process.command == [
            sys.executable if part == "python" else part for part in compose_command
        ]


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
    ports = {name: free_port() for name in ["PROXY", "SETOSA", "VERSICOLOR", "VIRGINICA", "API"]}
    ports["JOB_METRICS"] = free_port()
    marker = f"RUN_SUITE_TEST_{os.getpid()}_{time.monotonic_ns()}"
    env = {
        **clean_environment(),
        **{f"{name}_PORT": str(port) for name, port in ports.items()},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'batch.sqlite3'}",
        "BATCH_WAIT_TIME": "1",
        marker: "1",
    }
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        runner = subprocess.Popen(
            [sys.executable, "scripts/run_suite.py"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while "every process is ready" not in log_path.read_text():
            assert runner.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        assert len(_processes_with_marker(marker)) >= len(BUILT_SERVICES)

        examples = _readme_curl_examples()
        assert len(examples) >= 5
        default_ports = {"9100": "PROXY", "8000": "API"}
        for example in examples:
            local = re.sub(
                r"localhost:(9100|8000)",
                lambda match: f"localhost:{ports[default_ports[match[1]]]}",
                example,
            )
            if "/predict/id/" in local:
                httpx.get(f"http://localhost:{ports['API']}/health")  # registered by now
            result = subprocess.run(
                ["bash", "-c", local + " --fail-with-body --max-time 10"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, (example, result.stdout, result.stderr)
            assert result.stdout.startswith("{"), (example, result.stdout)
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            pytest.fail(f"runner did not stop on SIGTERM:\n{log_path.read_text()}")

    time.sleep(0.5)
    assert _processes_with_marker(marker) == [], "orphan processes left behind"
    for name, port in ports.items():
        assert port_is_free(port), f"{name} port {port} still taken"

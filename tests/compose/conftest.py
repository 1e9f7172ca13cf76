"""The compose tier: the suite's images built and its stack started by Docker Compose.

Skips with the reason when no Docker engine answers, unless REQUIRE_DOCKER=1 (CI), which
makes that a failure. The base images come from scripts/base_images.py: the local or
pulled official ones, or stand-ins built when the pull fails.
"""

import os
import secrets
import subprocess
import sys

import pytest
import yaml

from tests.compose.project import (
    ComposeProject,
    docker_config_with_compose,
    docker_engine_problem,
)
from tests.processes import REPO_ROOT, free_port

PUBLISHED_PORTS = (
    "API_PORT",
    "PROXY_PORT",
    "SETOSA_PORT",
    "VERSICOLOR_PORT",
    "VIRGINICA_PORT",
    "PROMETHEUS_PORT",
)


def _require_docker() -> None:
    problem = docker_engine_problem()
    if problem is None:
        return
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail(f"REQUIRE_DOCKER=1 but {problem}")
    pytest.skip(reason=f"no Docker engine for the compose tier: {problem} (start dockerd)")


def _ensure_base_images() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/base_images.py"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(result.stdout)
    if result.returncode != 0:
        pytest.fail(f"scripts/base_images.py failed:\n{result.stdout}\n{result.stderr[-3000:]}")


def project_settings() -> dict[str, str]:
    """The env file of the test project: free host ports, fresh passwords, quick passes."""
    settings = {name: str(free_port()) for name in PUBLISHED_PORTS}
    settings.update(
        MYSQL_ROOT_PASSWORD=secrets.token_hex(8),
        MYSQL_PASSWORD=secrets.token_hex(8),
        MYSQL_USER="user",
        MYSQL_DATABASE="sample_db",
        # Passes every second, so the stack suite's batch test is scored quickly, and small
        # chunks on two threads, so a pass over 100,000 items lasts long enough to be killed.
        BATCH_WAIT_TIME="1",
        CHUNK_SIZE="500",
        WORKER_THREADS="2",
        # Its own tag: the developer's ml-serving-patterns/*:latest images stay as they are.
        IMAGE_TAG="compose-test",
    )
    return settings


def write_prometheus_config(directory, settings: dict[str, str]):
    """monitoring/prometheus.yml with the project's ports and a short scrape interval.

    The test project's processes listen on free ports (container port = host port), and
    a 2-second interval lets the test see scrapes and rule evaluations within seconds.
    """
    config = yaml.safe_load((REPO_ROOT / "monitoring" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="2s", evaluation_interval="2s")
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [_project_target(target, settings) for target in static["targets"]]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o644)  # read by the container's unprivileged user
    return path


def _project_target(target: str, settings: dict[str, str]) -> str:
    host, port = target.split(":")
    variable = {"proxy": "PROXY_PORT", "api": "API_PORT", "job": "JOB_METRICS_PORT"}.get(
        host, host.removeprefix("service_").upper() + "_PORT"
    )
    return f"{host}:{settings.get(variable, port)}"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A started stack under its own project name; `down -v` whatever the tests did."""
    _require_docker()
    _ensure_base_images()
    directory = tmp_path_factory.mktemp("compose")
    settings = project_settings()
    settings["PROMETHEUS_CONFIG"] = str(write_prometheus_config(directory, settings))
    env_file = directory / "test.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    project = ComposeProject(
        name=f"mlsp-test-{secrets.token_hex(3)}",
        env_file=env_file,
        docker_config=docker_config_with_compose(directory / "docker-config"),
        settings=settings,
    )
    try:
        seconds = project.up("--build")
        print(f"compose tier: `up --build --wait` took {seconds:.1f}s")
        yield project
    finally:
        project.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)

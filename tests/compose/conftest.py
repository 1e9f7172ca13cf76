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

from tooling.compose_project import (
    ComposeProject,
    docker_config_with_compose,
    docker_engine_problem,
    project_settings,
)
from tooling.processes import REPO_ROOT


def _require_docker() -> None:
    problem = docker_engine_problem()
    if problem is None:
        return
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail(f"REQUIRE_DOCKER=1 but {problem}")
    pytest.skip(reason=f"no Docker engine for the compose tier: {problem} (start dockerd)")


def _ensure_base_images() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scripts.base_images"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(result.stdout)
    if result.returncode != 0:
        pytest.fail(f"scripts/base_images.py failed:\n{result.stdout}\n{result.stderr[-3000:]}")


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

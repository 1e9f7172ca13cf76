"""The suite on a single-node Docker Swarm: docker-compose.yml + docker-stack.yml, deployed.

`SwarmStack.start()` initialises the swarm when the engine is not in one (`stop()`
leaves it once no service is left on it), builds the images under a tag of its own,
renders the stack file with scripts/stack_file.py and deploys it under a stack name of
its own, on free host ports.
Shared by the swarm tier (tests/swarm) and bench/bench_swarm.py.
"""

import json
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from scripts.stack_file import compose_config, stack_config
from tooling.compose_project import ComposeProject, docker_config_with_compose
from tooling.processes import free_port

IMAGE_TAG = "swarm-test"
CLASS_SERVICES = ("service_setosa", "service_versicolor", "service_virginica")


class SwarmError(RuntimeError):
    pass


def parse_metrics(text: str, sample_name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called `sample_name` on a /metrics page, with its labels."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == sample_name
    ]


def stack_settings(**overrides: str) -> dict[str, str]:
    """The env file of a test stack: free host ports, fresh passwords, quick small passes."""
    settings = {
        "PROXY_PORT": str(free_port()),
        "API_PORT": str(free_port()),
        "MYSQL_ROOT_PASSWORD": secrets.token_hex(8),
        "MYSQL_PASSWORD": secrets.token_hex(8),
        "IMAGE_TAG": IMAGE_TAG,
        "SERVICE_REPLICAS": "2",
        "JOB_REPLICAS": "2",
        # Passes every second in chunks small enough to share a backlog between two jobs.
        "BATCH_WAIT_TIME": "1",
        "CHUNK_SIZE": "1000",
        "WORKER_THREADS": "2",
        # Two cores run the proxy, seven replicas, the load and a replica starting: the
        # whole machine stalls for a second or two at times, which the default 2 s
        # deadline would count against the orchestration the tier measures.
        "BACKEND_TIMEOUT": "5",
        # The model repository routes, for rolling a model version out on every replica.
        "ADMIN_TOKEN": secrets.token_hex(16),
    }
    settings.update(overrides)
    return settings


@dataclass
class SwarmStack:
    name: str
    directory: Path
    settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env_file = self.directory / "stack.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.settings.items()))
        # The compose tier's wrapper: a clean environment and the pinned compose binary.
        self.compose_project = ComposeProject(
            name=f"{self.name}-build",
            env_file=self.env_file,
            docker_config=docker_config_with_compose(self.directory / "docker-config"),
            settings=self.settings,
        )

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.settings['PROXY_PORT']}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.settings['API_PORT']}"

    def docker(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        return self.compose_project.docker(*args, timeout=timeout, check=check)

    def start(self, timeout: float = 420) -> None:
        state = self.docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
        if state != "active":
            self.docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        self.compose_project.compose("build", timeout=900)
        stack_file = self.directory / "stack.json"
        config = compose_config(self.env_file, self.compose_project.environment())
        stack_file.write_text(json.dumps(stack_config(config), indent=2))
        self.docker(
            "stack", "deploy", "--resolve-image", "never", "--compose-file", str(stack_file),
            self.name,
        )  # fmt: skip
        self.wait_until_ready(timeout)

    def stop(self) -> None:
        """Remove the stack, then leave the swarm if nothing else runs on it."""
        try:
            self.docker("stack", "rm", self.name, check=False)
            # The network goes last, once every task's container is gone.
            deadline = time.monotonic() + 90
            while (
                time.monotonic() < deadline
                and self.docker(
                    "network", "ls", "--quiet", "--filter", f"name={self.name}_default", check=False
                ).strip()
            ):
                time.sleep(1)
            # The images stay, as the compose tier's do; the extra tag of an update goes.
            for image in self.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").split():
                if image.endswith(f":{IMAGE_TAG}-update"):
                    self.docker("image", "rm", image, check=False)
        finally:
            # Left once nothing else runs on it, whoever joined it (an interrupted run may
            # have); a swarm with services of someone else's, or another run's, stays.
            if not self.docker("service", "ls", "--quiet", check=False).split():
                self.docker("swarm", "leave", "--force", check=False)

    def service(self, name: str) -> str:
        return f"{self.name}_{name}"

    def tasks(self, name: str) -> list[dict]:
        """The service's tasks that should be running, with their state and container id."""
        output = self.docker(
            "service", "ps", self.service(name), "--filter", "desired-state=running",
            "--no-trunc", "--format", "{{json .}}",
        )  # fmt: skip
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    def running_containers(self, name: str) -> list[str]:
        """Ids of the service's running containers (healthy ones, for a checked service)."""
        output = self.docker(
            "ps", "--quiet", "--no-trunc",
            "--filter", f"label=com.docker.swarm.service.name={self.service(name)}",
            "--filter", "status=running",
        )  # fmt: skip
        return output.split()

    def container_address(self, container: str) -> str:
        networks = json.loads(self.docker("inspect", container))[0]["NetworkSettings"]["Networks"]
        return networks[f"{self.name}_default"]["IPAddress"]

    def replicas_running(self, name: str) -> int:
        return sum(task["CurrentState"].startswith("Running") for task in self.tasks(name))

    def wait_until_ready(self, timeout: float) -> None:
        expected = {
            **{name: int(self.settings["SERVICE_REPLICAS"]) for name in CLASS_SERVICES},
            "job": int(self.settings["JOB_REPLICAS"]),
            "proxy": 1,
            "api": 1,
            "mysql": 1,
        }
        deadline = time.monotonic() + timeout
        while True:
            running = {name: self.replicas_running(name) for name in expected}
            if running == expected and self._answers():
                return
            if time.monotonic() > deadline:
                raise SwarmError(f"stack not ready in {timeout}s: {running}\n{self.status()}")
            time.sleep(2)

    def _answers(self) -> bool:
        try:
            proxy = httpx.get(self.proxy_url + "/health/all", timeout=5)
            api = httpx.get(self.api_url + "/health", timeout=5)
        except httpx.TransportError:
            return False
        return proxy.status_code == 200 and api.status_code == 200

    def status(self) -> str:
        return self.docker(
            "stack", "ps", self.name, "--no-trunc",
            "--format", "{{.Name}} {{.Image}} {{.CurrentState}} {{.Error}}",
            check=False,
        )  # fmt: skip

    def logs(self, name: str) -> str:
        return self.docker("service", "logs", "--raw", self.service(name), check=False)

    def container_logs(self, container: str) -> str:
        result = subprocess.run(
            ["docker", "logs", container], capture_output=True, text=True, timeout=60
        )
        return result.stdout + result.stderr

    def replica_calls(self, service: str) -> dict[str, float]:
        """The proxy's calls per replica address of `service` (e.g. "setosa")."""
        text = httpx.get(self.proxy_url + "/metrics", timeout=10).text
        return {
            labels["replica"]: value
            for labels, value in parse_metrics(text, "proxy_backend_replica_calls_total")
            if labels.get("service") == service
        }

    def backend_failures(self) -> dict[str, float]:
        """The proxy's failed backend calls so far, by "service reason"."""
        text = httpx.get(self.proxy_url + "/metrics", timeout=10).text
        return {
            f"{labels['service']} {labels['reason']}": value
            for labels, value in parse_metrics(text, "proxy_backend_failures_total")
        }

    def mysql(self, sql: str) -> list[list[str]]:
        container = self.running_containers("mysql")[0]
        output = self.docker(
            "exec", container, "mysql", "--user=root",
            f"--password={self.settings['MYSQL_ROOT_PASSWORD']}",
            "--batch", "--skip-column-names", "--database=sample_db", f"--execute={sql}",
        )  # fmt: skip
        return [line.split("\t") for line in output.splitlines()]

    def mysql_count(self, sql: str) -> int:
        return int(self.mysql(sql)[0][0])

    def job_scored(self) -> dict[str, float]:
        """Items each running job replica has scored since it started (its own metrics)."""
        scored = {}
        for container in self.running_containers("job"):
            text = self.docker(
                "exec", container, "python", "-c",
                "import urllib.request; print(urllib.request.urlopen("
                "'http://127.0.0.1:9200/metrics', timeout=5).read().decode())",
            )  # fmt: skip
            values = parse_metrics(text, "batch_job_items_scored_total")
            scored[container[:12]] = values[0][1] if values else 0.0
        return scored

"""Start the suite's real processes for integration tests, and always stop them."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from src.settings import (
    SERVICE_ENV_PREFIX,
    ApiSettings,
    JobSettings,
    ProxySettings,
    ServiceSettings,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def suite_setting_names() -> frozenset[str]:
    """Every variable a process of the suite reads: its settings classes' fields, upper-cased."""
    classes = (ServiceSettings, ProxySettings, ApiSettings, JobSettings)
    return frozenset(name.upper() for cls in classes for name in cls.model_fields)


def clean_environment() -> dict[str, str]:
    """os.environ without the suite's settings.

    The suite's own settings are not inherited from the shell that runs pytest (CI sets
    MYSQL_* for example): each test passes exactly the settings it means.
    """
    names = suite_setting_names()
    return {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in names and not key.upper().startswith(SERVICE_ENV_PREFIX)
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningProcess:
    name: str
    popen: subprocess.Popen
    log_path: Path
    port: int | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.popen.wait(5)


class ProcessStarter:
    """Starts `python -m <module>` processes in their own session; `stop_all()` ends them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[RunningProcess] = []

    def start(
        self,
        name: str,
        module_args: list[str],
        env: dict[str, str] | None = None,
        port: int | None = None,
        cwd: Path = REPO_ROOT,
    ) -> RunningProcess:
        """`python -m` with `module_args` from `cwd` (another source tree for A/B benchmarks)."""
        full_env = {**clean_environment(), "PYTHONUNBUFFERED": "1", **(env or {})}
        if port is not None:
            full_env["PORT"] = str(port)
        log_path = self.log_dir / f"{name}-{len(self.started)}.log"
        with log_path.open("wb") as log_file:
            popen = subprocess.Popen(
                [sys.executable, "-m", *module_args],
                cwd=cwd,
                env=full_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so stop() reaches any children too
            )
        process = RunningProcess(name, popen, log_path, port, env or {})
        self.started.append(process)
        return process

    def start_http(
        self,
        name: str,
        module_args: list[str],
        env: dict[str, str] | None = None,
        health_path: str = "/health",
        timeout: float = 30,
    ) -> RunningProcess:
        process = self.start(name, module_args, env, port=free_port())
        wait_until_healthy(process, health_path, timeout)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()


def wait_until_healthy(process: RunningProcess, path: str = "/health", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited early:\n{process.log()[-3000:]}")
        try:
            if httpx.get(process.base_url + path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{process.name} not healthy after {timeout}s:\n{process.log()[-3000:]}")


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


CLASSES = ("setosa", "versicolor", "virginica")


@dataclass
class HorizontalSuite:
    proxy: RunningProcess
    services: dict[str, RunningProcess]


def start_horizontal_suite(
    starter: ProcessStarter,
    proxy_env: dict[str, str] | None = None,
    classes: tuple[str, ...] = CLASSES,
    service_env: Callable[[str], dict[str, str]] | None = None,
) -> HorizontalSuite:
    """A class service per class and a proxy in front of them, all on free ports.

    `service_env(name)`: a class service's own settings (another model set's files).
    """
    services = {
        name: starter.start(
            f"service-{name}",
            ["src.services"],
            {"MODE": name, **(service_env(name) if service_env else {})},
            port=free_port(),
        )
        for name in classes
    }
    env = {f"SERVICE_{name.upper()}": process.base_url for name, process in services.items()}
    proxy = starter.start("proxy", ["src.proxy"], {**env, **(proxy_env or {})}, port=free_port())
    for process in [*services.values(), proxy]:
        wait_until_healthy(process)
    return HorizontalSuite(proxy, services)

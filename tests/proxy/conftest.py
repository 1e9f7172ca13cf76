"""A real proxy in front of three real class services, all on free ports."""

from dataclasses import dataclass

import pytest

from tests.processes import ProcessStarter, RunningProcess, free_port, wait_until_healthy

CLASSES = ("setosa", "versicolor", "virginica")


@dataclass
class Suite:
    proxy: RunningProcess
    services: dict[str, RunningProcess]


def start_suite(starter: ProcessStarter, proxy_env: dict[str, str] | None = None) -> Suite:
    services = {
        name: starter.start(f"service-{name}", ["src.services"], {"MODE": name}, port=free_port())
        for name in CLASSES
    }
    env = {f"SERVICE_{name.upper()}": process.base_url for name, process in services.items()}
    proxy = starter.start("proxy", ["src.proxy"], {**env, **(proxy_env or {})}, port=free_port())
    for process in [*services.values(), proxy]:
        wait_until_healthy(process)
    return Suite(proxy, services)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Shared by tests that leave every process running."""
    starter = ProcessStarter(tmp_path_factory.mktemp("suite"))
    yield start_suite(starter)
    starter.stop_all()


@pytest.fixture
def own_suite(processes):
    """A suite of this test's own, for tests that stop or freeze services."""
    return start_suite(processes, {"BACKEND_TIMEOUT": "0.5"})

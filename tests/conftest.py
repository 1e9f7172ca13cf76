"""Fixtures shared by every test folder."""

import pytest

from tests.batch_support import ready_engine, sqlite_url
from tests.processes import ProcessStarter, start_horizontal_suite


@pytest.fixture
def processes(tmp_path):
    """Start real suite processes; every one is stopped when the test ends."""
    starter = ProcessStarter(tmp_path)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Proxy + three class services, shared by the tests of a module that leave them running."""
    starter = ProcessStarter(tmp_path_factory.mktemp("suite"))
    yield start_horizontal_suite(starter)
    starter.stop_all()


@pytest.fixture
def own_suite(processes):
    """A horizontal suite of this test's own, for tests that stop or freeze services."""
    return start_horizontal_suite(processes, {"BACKEND_TIMEOUT": "0.5"})


@pytest.fixture(scope="module")
def sqlite_api(tmp_path_factory):
    """`python -m src.api` on a migrated SQLite file, shared by a module."""
    directory = tmp_path_factory.mktemp("sqlite-api")
    url = sqlite_url(directory)
    ready_engine(url).dispose()
    starter = ProcessStarter(directory)
    try:
        yield starter.start_http("api", ["src.api"], {"DATABASE_URL": url})
    finally:
        starter.stop_all()

"""Fixtures shared by every test folder."""

from pathlib import Path

import pytest

from src.ml.train import train_all
from tests.batch_support import sqlite_starter
from tooling.processes import ProcessStarter, start_horizontal_suite


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
    with sqlite_starter(tmp_path_factory.mktemp("sqlite-api")) as (url, starter):
        yield starter.start_http("api", ["src.api"], {"DATABASE_URL": url})


@pytest.fixture(scope="session")
def wine_models(tmp_path_factory) -> Path:
    """The wine model set (13 features, 3 classes), trained once per session into a model
    repository: wine/1/model.onnx, class_N/1/model.onnx, label.json, sample.json."""
    folder = tmp_path_factory.mktemp("wine-models")
    train_all(folder, "wine")
    return folder

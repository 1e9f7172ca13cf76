"""Fixtures shared by every test folder."""

import pytest

from tests.processes import ProcessStarter


@pytest.fixture
def processes(tmp_path):
    """Start real suite processes; every one is stopped when the test ends."""
    starter = ProcessStarter(tmp_path)
    yield starter
    starter.stop_all()

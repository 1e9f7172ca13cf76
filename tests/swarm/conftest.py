"""The swarm tier: the suite deployed on a single-node Docker Swarm, then broken on purpose.

Like the compose tier it skips without a Docker engine unless REQUIRE_DOCKER=1 (CI), and
it always removes its stack and leaves the swarm (once nothing else runs on it),
whatever the tests did.
"""

import secrets

import pytest

from tests.compose.conftest import _ensure_base_images, _require_docker
from tooling.swarm_stack import SwarmStack, stack_settings


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    _require_docker()
    _ensure_base_images()
    stack = SwarmStack(
        name=f"mlsp-swarm-{secrets.token_hex(3)}",
        directory=tmp_path_factory.mktemp("swarm"),
        settings=stack_settings(),
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()

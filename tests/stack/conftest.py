"""The whole suite as users run it: `make run`'s runner, or a stack that is already up.

With SUITE_PROXY_URL and SUITE_API_URL set (compose, or Kubernetes port-forwards), the
tests here talk to that stack; otherwise they start scripts/run_suite.py themselves on
free ports, the executable twin of docker-compose.yml.
"""

import os

import pytest

from tests.stack.runner import Stack, start_runner, stop_runner


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    proxy_url, api_url = os.environ.get("SUITE_PROXY_URL"), os.environ.get("SUITE_API_URL")
    if proxy_url and api_url:
        yield Stack(proxy_url.rstrip("/"), api_url.rstrip("/"))
        return
    if proxy_url or api_url:
        pytest.fail("set both SUITE_PROXY_URL and SUITE_API_URL, or neither")
    started = start_runner(tmp_path_factory.mktemp("stack"))
    yield started
    stop_runner(started)

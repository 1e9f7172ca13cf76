"""The OpenAPI documents tell the truth: schemathesis fuzzes the three kinds of process.

Every check of schemathesis runs (not a server error, status codes, content types, headers
and response bodies as declared, bad data rejected, good data accepted, unsupported
methods, stateful links); tests/schemathesis.toml fixes the seed and the number of
examples so a run is repeatable, and says which check is off where, and why.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.batch_support import ready_engine, sqlite_url
from tooling.processes import ProcessStarter

CONFIG = Path(__file__).with_name("schemathesis.toml")
ST = Path(sys.executable).with_name("st")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    directory = tmp_path_factory.mktemp("contract-api")
    url = sqlite_url(directory)
    ready_engine(url).dispose()  # the schema, as `python -m src.db upgrade` makes it
    starter = ProcessStarter(directory)
    yield starter.start_http("api", ["src.api"], {"DATABASE_URL": url})
    starter.stop_all()


def run_schemathesis(base_url: str, workdir: Path) -> subprocess.CompletedProcess:
    # In a fresh directory: schemathesis keeps a cache of past failures in its working
    # directory, which would make one run depend on the last.
    return subprocess.run(
        [
            str(ST),
            "--no-color",
            "--config-file",
            str(CONFIG),
            "run",
            f"{base_url}/openapi.json",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.parametrize("target", ["proxy", "service", "api"])
def test_openapi_document_holds_under_fuzzing(target, suite, api, tmp_path):
    base_url = {
        "proxy": suite.proxy.base_url,
        "service": suite.services["setosa"].base_url,
        "api": api.base_url,
    }[target]
    result = run_schemathesis(base_url, tmp_path)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
    # The fixed seed from the config file, so a failure replays the same way.
    assert "Seed: 13" in result.stdout

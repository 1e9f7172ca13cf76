"""/docs and /redoc of real processes, rendered by headless Chromium with no network.

Chromium resolves no host but 127.0.0.1, so a page that needs a CDN renders nothing;
its net log must show that the page asked for nothing beyond the process itself.
Needs Debian's `chromium` (installed by .ci/run); skips without it unless CI=true.
"""

import json
import os
import re
import shutil
import subprocess

import httpx
import pytest

pytestmark = pytest.mark.timeout(300)

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Autofill asks Google about every page it sees, on the page's behalf.
    "--disable-features=AutofillServerCommunication",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # Lets the page's scripts fetch /openapi.json and render before the DOM is dumped.
    "--virtual-time-budget=20000",
)
_LOCAL = re.compile(r"^(http://127\.0\.0\.1:\d+/|data:|blob:)")


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("no chromium on PATH (.ci/run installs Debian's chromium)")
    pytest.skip(reason="no chromium on PATH: apt-get install chromium")


def render(url: str, workdir) -> tuple[str, list[str]]:
    """The DOM Chromium rendered at `url`, and every URL the page itself requested."""
    net_log = workdir / "net-log.json"
    result = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={workdir / 'profile'}",
            f"--log-net-log={net_log}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, page_requests(net_log)


def page_requests(net_log) -> list[str]:
    """URLs requested on behalf of a 127.0.0.1 page (not the browser's own update checks)."""
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    # A request's network isolation key is the top frame's site, wherever the request goes.
    starts = [event.get("params", {}) for event in log["events"] if event["type"] == start_job]
    return [
        params["url"]
        for params in starts
        if params.get("network_isolation_key", "").startswith("http://127.0.0.1")
    ]


@pytest.fixture
def base_urls(suite, sqlite_api) -> dict[str, str]:
    return {
        "proxy": suite.proxy.base_url,
        "service": suite.services["setosa"].base_url,
        "api": sqlite_api.base_url,
    }


def operations(base_url: str) -> list[tuple[str, str]]:
    """(path, operationId) of every operation of the process's OpenAPI document."""
    document = httpx.get(base_url + "/openapi.json", timeout=10).json()
    return [
        (path, operation["operationId"])
        for path, methods in document["paths"].items()
        for operation in methods.values()
    ]


# Per page: where the rendered DOM names each operation, what names it (the operation's
# path in Swagger UI, its operationId in ReDoc), and the page's script.
PAGES = {
    "/docs": (r'class="opblock-summary-path" data-path="([^"]+)"', 0, "swagger-ui-bundle.js"),
    "/redoc": (r'href="#(?:tag/[^"/]+/)?operation/([^"]+)"', 1, "redoc.standalone.js"),
}


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("process", ["proxy", "service", "api"])
def test_the_page_renders_every_operation_offline(process, page, base_urls, tmp_path):
    base_url = base_urls[process]
    pattern, key, script = PAGES[page]
    dom, requested = render(base_url + page, tmp_path)
    rendered = set(re.findall(pattern, dom))
    expected = {operation[key] for operation in operations(base_url)}
    assert expected and rendered == expected, dom[-2000:]
    assert any(url.endswith(f"/docs-assets/{script}") for url in requested), requested
    assert all(_LOCAL.match(url) for url in requested), requested


def test_the_pages_name_no_host_but_their_own(base_urls):
    for base_url in base_urls.values():
        for page in PAGES:
            html = httpx.get(base_url + page, timeout=10).text
            assert not re.search(r"https?://", html), (base_url, page, html)

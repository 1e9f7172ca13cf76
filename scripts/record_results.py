"""`make results`: run the suite's scenarios for real and write TEST_RESULTS.md.

Starts the three class services, the proxy and the batch API on free ports, sends the
documented requests, and records each request, response and latency as it happened.
The batch flow runs on SQLite and, when a MySQL-compatible server answers (through
TEST_DATABASE_URL or MYSQL_*; default root@127.0.0.1:3306), on a fresh database there.
Finally it runs the whole pytest suite and records its summary line.
"""

import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pymysql
from sqlalchemy.engine import URL

# The test harness already starts suite processes on free ports and stops them.
from tooling.mysql_server import connect, mysql_server_url
from tooling.processes import (
    REPO_ROOT,
    ProcessStarter,
    start_horizontal_suite,
)

OUTPUT = REPO_ROOT / "TEST_RESULTS.md"
SETOSA = [5.1, 3.5, 1.4, 0.2]
VERSICOLOR = [5.9, 3.0, 4.2, 1.5]
VIRGINICA = [6.5, 3.0, 5.5, 1.8]


class Recorder:
    """Sends requests and keeps a Markdown record of each exchange."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        # One pooled client, so latencies are the server's, not a new connection's.
        self.client = httpx.Client(timeout=30)

    def heading(self, text: str, level: int = 2) -> None:
        self.lines += ["", "#" * level + " " + text, ""]

    def note(self, text: str) -> None:
        self.lines += [text, ""]

    def call(
        self,
        title: str,
        service: str,
        base_url: str,
        method: str,
        path: str,
        body=None,
        raw: str | None = None,
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"} if body is not None or raw else {}
        content = raw if raw is not None else (json.dumps(body) if body is not None else None)
        started = time.perf_counter()
        response = self.client.request(method, base_url + path, content=content, headers=headers)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.lines += [f"**{title}**: `{method} {path}` on the {service}"]
        if content is not None:
            self.lines += ["", "```json", content, "```"]
        self.lines += [
            "",
            f"HTTP {response.status_code} in {elapsed_ms:.1f} ms "
            f"(request id `{response.headers.get('X-Request-ID', '-')}`):",
            "",
            "```json",
            json.dumps(response.json(), indent=2),
            "```",
            "",
        ]
        return response


def horizontal_scenarios(recorder: Recorder, starter: ProcessStarter) -> None:
    recorder.heading("Horizontal microservices: proxy and three class services")
    suite = start_horizontal_suite(starter, {"BACKEND_TIMEOUT": "1.0"})
    proxy = suite.proxy.base_url
    recorder.call("Proxy health", "proxy", proxy, "GET", "/health")
    recorder.call("Every service's health, in parallel", "proxy", proxy, "GET", "/health/all")
    recorder.call("The fixed sample at every service", "proxy", proxy, "POST", "/predict/post/test")
    recorder.call(
        "Label of a setosa sample", "proxy", proxy, "POST", "/predict/label", {"data": [SETOSA]}
    )
    recorder.call(
        "Label of a virginica sample",
        "proxy",
        proxy,
        "POST",
        "/predict/label",
        {"data": [VIRGINICA]},
    )
    recorder.call(
        "Several rows at once",
        "proxy",
        proxy,
        "POST",
        "/predict/label",
        {"data": [SETOSA, VERSICOLOR, VIRGINICA]},
    )
    recorder.call(
        "Every service's answer, keyed by name",
        "proxy",
        proxy,
        "POST",
        "/predict",
        {"data": [SETOSA, VIRGINICA]},
    )
    recorder.heading("Bad input", 3)
    recorder.call(
        "A row of 3 numbers", "proxy", proxy, "POST", "/predict/label", {"data": [[5.1, 3.5, 1.4]]}
    )
    recorder.call(
        "A string and NaN",
        "proxy",
        proxy,
        "POST",
        "/predict/label",
        raw='{"data": [[5.1, "3.5", 1.4, NaN]]}',
    )
    recorder.call(
        "No rows",
        "class service setosa",
        suite.services["setosa"].base_url,
        "POST",
        "/predict",
        {"data": []},
    )
    recorder.heading("One service stopped (SIGKILL to virginica)", 3)
    suite.services["virginica"].signal(signal.SIGKILL)
    suite.services["virginica"].popen.wait(10)
    recorder.call("Health with virginica down", "proxy", proxy, "GET", "/health/all")
    recorder.call(
        "Label of the virginica sample, degraded",
        "proxy",
        proxy,
        "POST",
        "/predict/label",
        {"data": [SETOSA, VIRGINICA]},
    )
    recorder.call("Every answer, degraded", "proxy", proxy, "POST", "/predict", {"data": [SETOSA]})


def batch_scenarios(
    recorder: Recorder, starter: ProcessStarter, database: str, database_url: str
) -> None:
    recorder.heading(f"Batch: register, score, fetch ({database})")
    env = {"DATABASE_URL": database_url}
    # As compose's one-shot migrate service does before the api and the job start.
    migrate = starter.start(f"migrate-{database}", ["src.db", "upgrade"], env)
    if migrate.popen.wait(120) != 0:
        raise RuntimeError(f"python -m src.db upgrade failed:\n{migrate.log()[-3000:]}")
    api = starter.start_http(f"api-{database}", ["src.api"], env)
    registered = recorder.call(
        "Register three items",
        "API",
        api.base_url,
        "POST",
        "/predict",
        {"data": [SETOSA, VERSICOLOR, VIRGINICA]},
    ).json()
    first = registered["id"]
    recorder.call("Before the job's pass", "API", api.base_url, "GET", f"/predict/id/{first}")
    job = starter.start(f"job-{database}", ["src.task", "--once"], {**env, "METRICS_PORT": "0"})
    exit_code = job.popen.wait(120)
    pass_lines = [line for line in job.log().splitlines() if "pass" in line.lower()]
    recorder.note(f"`python -m src.task --once` exited {exit_code}; its log said:")
    recorder.lines += ["```text", *pass_lines[-3:], "```", ""]
    for item_id in registered["ids"]:
        recorder.call(
            f"Item {item_id} after the pass", "API", api.base_url, "GET", f"/predict/id/{item_id}"
        )
    recorder.call("An unknown id", "API", api.base_url, "GET", "/predict/id/999999")
    api.stop()


def _mysql_server() -> URL | None:
    server = mysql_server_url()
    try:
        connect(server, connect_timeout=3).close()
    except pymysql.MySQLError:
        return None
    return server


def _mysql(server: URL, statement: str) -> None:
    with connect(server, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(statement)


def pytest_summary() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return (
        lines[-1].strip("= ") if lines else f"pytest printed no summary (exit {result.returncode})"
    )


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = (
        " (with uncommitted changes)"
        if git("status", "--porcelain", "--untracked-files=no")
        else ""
    )
    return (git("rev-parse", "--short", "HEAD") or "unknown") + dirty


def main() -> int:
    recorder = Recorder()
    with tempfile.TemporaryDirectory(prefix="results-") as workdir:
        starter = ProcessStarter(Path(workdir))
        try:
            horizontal_scenarios(recorder, starter)
            batch_scenarios(
                recorder, starter, "SQLite", f"sqlite:///{Path(workdir) / 'batch.sqlite3'}"
            )
            server = _mysql_server()
            if server is None:
                recorder.heading("Batch on MySQL/MariaDB")
                recorder.note("No MySQL-compatible server answered; this part was not run.")
            else:
                database = f"results_{uuid.uuid4().hex[:8]}"
                _mysql(server, f"CREATE DATABASE {database}")
                try:
                    with connect(server) as connection:
                        version = connection.get_server_info()
                    batch_scenarios(
                        recorder,
                        starter,
                        f"MySQL-compatible server {version}",
                        server.set(database=database).render_as_string(hide_password=False),
                    )
                finally:
                    _mysql(server, f"DROP DATABASE IF EXISTS {database}")
        finally:
            starter.stop_all()

    header = [
        "# Test results",
        "",
        "Written by `make results` (`scripts/record_results.py`), never by hand: every "
        "request below was sent to real processes started for the run, and every response "
        "and latency is what came back.",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Commit: {_commit()}",
        "- Command: `make results`",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; latencies are single requests over loopback",
        "- pytest: `PYTEST_SUMMARY`",
    ]
    # Written before pytest runs, so the suite's check of this document sees this run's figures.
    OUTPUT.write_text("\n".join(header + recorder.lines).rstrip() + "\n")
    summary = pytest_summary()
    OUTPUT.write_text(OUTPUT.read_text().replace("PYTEST_SUMMARY", summary, 1))
    print(f"wrote {OUTPUT.relative_to(REPO_ROOT)}; pytest: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

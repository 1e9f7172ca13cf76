"""`make run`: every process of docker-compose.yml on this machine, without Docker.

The compose file is the single source: each service built from this repo becomes a
local process with the same command and environment. Hostnames of other services
become 127.0.0.1, and a variable that names a service not run here (MYSQL_SERVER=mysql)
is dropped, so the batch pattern falls back to its embedded SQLite database.
A one-shot service (one that others wait for with `service_completed_successfully`,
like `migrate`) runs to completion first; the others start only if it exits 0.
Settings come from the caller's environment through the file's `${VAR:-default}`s, and
the file itself is COMPOSE_FILE when set, as for compose (a user's own model set,
docs/your-model.md).
Ctrl-C or SIGTERM stops every process (honcho kills their process groups).
"""

import json
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml
from honcho.manager import Manager

from tooling.compose_variables import interpolate

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
READY_TIMEOUT_SECONDS = 90


@dataclass(frozen=True)
class LocalProcess:
    name: str
    command: list[str]
    env: dict[str, str]
    # Runs to completion before the others start (compose: service_completed_successfully).
    one_shot: bool = False

    @property
    def ready_url(self) -> str | None:
        """Where to poll until the process answers: /health of an HTTP service, else /metrics."""
        if "PORT" in self.env:
            return f"http://127.0.0.1:{self.env['PORT']}/health"
        if self.env.get("METRICS_PORT", "0") != "0":
            return f"http://127.0.0.1:{self.env['METRICS_PORT']}/metrics"
        return None


def load_processes(
    environ: dict[str, str], compose_file: Path = COMPOSE_FILE
) -> list[LocalProcess]:
    services = yaml.safe_load(compose_file.read_text())["services"]
    built_images = {service.get("image") for service in services.values() if "build" in service}
    # Ours: built from this repo, or run from an image built from it (migrate).
    local = [
        name
        for name, service in services.items()
        if "build" in service or service.get("image") in built_images
    ]
    waited_for = {
        dependency
        for service in services.values()
        if isinstance(service.get("depends_on"), dict)
        for dependency, condition in service["depends_on"].items()
        if condition.get("condition") == "service_completed_successfully"
    }
    elsewhere = set(services) - set(local)
    processes = []
    for name in local:
        env = {}
        for key, raw in (services[name].get("environment") or {}).items():
            value = interpolate(str(raw), environ)
            if value in elsewhere:
                continue  # e.g. MYSQL_SERVER=mysql: no such host here
            for host in local:
                value = value.replace(f"://{host}:", "://127.0.0.1:")
            env[key] = value
        command = [
            sys.executable if part == "python" else part for part in services[name]["command"]
        ]
        processes.append(LocalProcess(name, command, env, one_shot=name in waited_for))
    return processes


def _wait_until_ready(processes: list[LocalProcess], manager_done: threading.Event) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    pending = [process for process in processes if process.ready_url]
    while pending and time.monotonic() < deadline and not manager_done.is_set():
        for process in list(pending):
            try:
                with urllib.request.urlopen(process.ready_url, timeout=1) as response:
                    if response.status == 200:
                        pending.remove(process)
            except OSError:
                pass
        time.sleep(0.2)
    if manager_done.is_set():
        return
    if pending:
        names = ", ".join(process.name for process in pending)
        print(f"run_suite: not ready after {READY_TIMEOUT_SECONDS}s: {names}", flush=True)
        return
    print(_ready_banner(processes), flush=True)


def _example_body(proxy: str) -> str:
    """A request body of the model set's example row, as the proxy's /metadata gives it."""
    try:
        with urllib.request.urlopen(f"http://{proxy}/metadata", timeout=2) as response:
            sample = json.load(response)["data_sample"]
    except (OSError, ValueError, KeyError):
        sample = [[5.1, 3.5, 1.4, 0.2]]
    return json.dumps({"data": sample})


def _ready_banner(processes: list[LocalProcess]) -> str:
    ports = {process.name: process.env.get("PORT") for process in processes}
    proxy, api = f"localhost:{ports.get('proxy')}", f"localhost:{ports.get('api')}"
    json_header = "-H 'Content-Type: application/json'"
    body = _example_body(proxy)
    return "\n".join(
        [
            "",
            "run_suite: every process is ready. Try:",
            f"  curl -s {proxy}/health/all",
            f"  curl -s -X POST {proxy}/predict/label {json_header} -d '{body}'",
            f"  curl -s -X POST {proxy}/predict/post/test",
            f"  curl -s -X POST {api}/predict {json_header} -d '{body}'",
            f"  curl -s {api}/predict/id/1",
            "Ctrl-C stops everything.",
            "",
        ]
    )


def _process_env(process: LocalProcess) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **process.env}


def run_one_shots(processes: list[LocalProcess]) -> int:
    """Run each one-shot process to its end, in file order; the first failing exit code."""
    for process in processes:
        print(f"run_suite: running {process.name}: {shlex.join(process.command)}", flush=True)
        code = subprocess.run(process.command, env=_process_env(process), cwd=REPO_ROOT).returncode
        if code != 0:
            print(f"run_suite: {process.name} exited {code}; not starting the others", flush=True)
            return code
    return 0


def compose_file(environ: dict[str, str]) -> Path:
    """COMPOSE_FILE (relative to where `make run` was called), else the suite's own file."""
    named = environ.get("COMPOSE_FILE")
    if not named:
        return COMPOSE_FILE
    if os.pathsep in named:
        raise SystemExit(
            f"run_suite: COMPOSE_FILE names several files ({named}); make run takes one"
        )
    path = Path(named).resolve()
    if not path.is_file():
        raise SystemExit(f"run_suite: COMPOSE_FILE={named}: no such file")
    return path


def main() -> int:
    environ = dict(os.environ)
    chosen = compose_file(environ)
    os.chdir(REPO_ROOT)
    everything = load_processes(environ, chosen)
    if code := run_one_shots([process for process in everything if process.one_shot]):
        return code
    processes = [process for process in everything if not process.one_shot]
    manager = Manager()
    for process in processes:
        manager.add_process(
            process.name,
            # exec: the process honcho signals is the program itself, not a shell around it.
            "exec " + shlex.join(process.command),
            env=_process_env(process),
            cwd=str(REPO_ROOT),
        )
    manager_done = threading.Event()
    threading.Thread(target=_wait_until_ready, args=(processes, manager_done), daemon=True).start()
    manager.loop()  # returns once every process has stopped
    manager_done.set()
    return manager.returncode or 0


if __name__ == "__main__":
    sys.exit(main())

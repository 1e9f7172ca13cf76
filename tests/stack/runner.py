"""Start `make run`'s runner (scripts/run_suite.py) on free ports, and stop it as make would."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tooling.processes import REPO_ROOT, clean_environment, free_port

READY_LINE = "every process is ready"
PORT_VARIABLES = (
    "PROXY_PORT",
    "SETOSA_PORT",
    "VERSICOLOR_PORT",
    "VIRGINICA_PORT",
    "API_PORT",
    "JOB_METRICS_PORT",
)


@dataclass
class Stack:
    proxy_url: str
    api_url: str
    # Only for a stack the tests started: the runner, its log, its environment.
    runner: subprocess.Popen | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def start_runner(tmp_path: Path, extra_env: dict[str, str] | None = None) -> Stack:
    ports = {name: str(free_port()) for name in PORT_VARIABLES}
    env = {
        **clean_environment(),
        **ports,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'batch.sqlite3'}",
        "BATCH_WAIT_TIME": "1",
        **(extra_env or {}),
    }
    log_path = tmp_path / "run_suite.log"
    with log_path.open("wb") as log:
        runner = subprocess.Popen(
            [sys.executable, "-m", "scripts.run_suite"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = Stack(
        f"http://127.0.0.1:{ports['PROXY_PORT']}",
        f"http://127.0.0.1:{ports['API_PORT']}",
        runner,
        log_path,
        env,
    )
    deadline = time.monotonic() + 90
    while READY_LINE not in stack.log():
        if runner.poll() is not None or time.monotonic() > deadline:
            stop_runner(stack)
            raise RuntimeError(f"run_suite.py did not get ready:\n{stack.log()[-4000:]}")
        time.sleep(0.2)
    return stack


def stop_runner(stack: Stack) -> int | None:
    """SIGTERM, as make forwards it; returns the runner's exit code."""
    if stack.runner is None:
        return None
    if stack.runner.poll() is None:
        stack.runner.send_signal(signal.SIGTERM)
    try:
        return stack.runner.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(stack.runner.pid, signal.SIGKILL)
        raise

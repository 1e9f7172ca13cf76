"""What the batch pattern's tests share: fresh databases, a TCP relay to cut, job helpers.

A MySQL-compatible server is found through TEST_DATABASE_URL or MYSQL_SERVER/MYSQL_PORT/
MYSQL_USER/MYSQL_PASSWORD (default 127.0.0.1:3306, root, no password). Each test gets a
database of its own (`test_<random>`), dropped afterwards. Without a server the MySQL
tests skip, unless REQUIRE_MYSQL=1: then they fail.
"""

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import pymysql
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import URL, make_url

from src.db.engine import create_db_engine
from src.db.migrate import upgrade
from src.db.tables import items, predictions
from tooling.mysql_server import connect, mysql_server_url
from tooling.processes import ProcessStarter, RunningProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
# Iris samples whose class is not in doubt: (row, label).
CLASSIC_SAMPLES = [
    ([5.1, 3.5, 1.4, 0.2], "setosa"),
    ([7.0, 3.2, 4.7, 1.4], "versicolor"),
    ([6.3, 3.3, 6.0, 2.5], "virginica"),
]


def _admin_connection(server: URL) -> pymysql.Connection:
    return connect(server, connect_timeout=3, autocommit=True)


def _require_mysql(server: URL) -> None:
    try:
        _admin_connection(server).close()
    except pymysql.MySQLError as error:
        where = server.render_as_string(hide_password=True)
        reason = (
            f"no MySQL-compatible server at {where} ({error}); set MYSQL_SERVER, MYSQL_PORT, "
            "MYSQL_USER, MYSQL_PASSWORD or TEST_DATABASE_URL"
        )
        if os.environ.get("REQUIRE_MYSQL") == "1":
            pytest.fail(f"REQUIRE_MYSQL=1 but {reason}")
        pytest.skip(reason)


@contextmanager
def fresh_mysql_database() -> Iterator[str]:
    """A new, empty database on the test server; its URL, dropped on exit."""
    server = mysql_server_url()
    _require_mysql(server)
    name = f"test_{uuid.uuid4().hex[:12]}"
    with _admin_connection(server) as admin:
        admin.cursor().execute(f"CREATE DATABASE `{name}`")
    try:
        yield server.set(database=name, query={"charset": "utf8mb4"}).render_as_string(
            hide_password=False
        )
    finally:
        with _admin_connection(server) as admin:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'batch.sqlite3'}"


@contextmanager
def sqlite_starter(directory: Path) -> Iterator[tuple[str, ProcessStarter]]:
    """A migrated SQLite file in `directory` and a starter whose processes end with the block."""
    url = sqlite_url(directory)
    ready_engine(url).dispose()
    starter = ProcessStarter(directory)
    try:
        yield url, starter
    finally:
        starter.stop_all()


def ready_engine(url: str):
    """An engine on `url` with the schema migrated to this release's, to seed and inspect."""
    engine = create_db_engine(url)
    upgrade(engine)
    return engine


def mysql_connection(url: str) -> pymysql.Connection:
    """A plain pymysql connection to the database of `url` (for locks the test holds)."""
    parsed = make_url(url)
    return connect(parsed, parsed.database, autocommit=False)


def job_env(database_url: str, **overrides: object) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "METRICS_PORT": "0",
        "BATCH_WAIT_TIME": "60",
        "WORKER_THREADS": "2",
        "CHUNK_SIZE": "500",
        "DB_RETRY_MAX_WAIT": "1",
        "LOG_LEVEL": "INFO",
    }
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def run_job_once(
    processes: ProcessStarter,
    env: dict[str, str],
    timeout: float = 120,
    args: Sequence[str] = ("--once",),
    module: str = "src.task",
) -> str:
    """Run `python -m src.task --once` (or `args`) to the end; its log (fails on a non-zero
    exit)."""
    job = processes.start("job-once", [module, *args], env)
    code = job.popen.wait(timeout)
    assert code == 0, f"job exited {code}:\n{job.log()[-3000:]}"
    return job.log()


def wait_for(condition: Callable[[], object], timeout: float = 30, what: str = "") -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")


def wait_for_log(process: RunningProcess, text: str, timeout: float = 30) -> None:
    wait_for(lambda: text in process.log(), timeout, f"{text!r} in {process.name}'s log")


class TcpRelay:
    """Forwards a local port to a server; `stop()` cuts every connection, `start()` resumes.

    It stands for a network or database outage: the port refuses connections while
    stopped, and comes back on the same number.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> "TcpRelay":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._close(self._listener)
                self._listener = None
            for sock in list(self._sockets):
                self._close(sock)
            self._sockets.clear()

    @staticmethod
    def _close(sock: socket.socket) -> None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._sockets.update((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with self._lock:
                    self._sockets.discard(sock)
                self._close(sock)


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A fresh database on the MySQL-compatible test server (skips or fails without one)."""
    with fresh_mysql_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def database_url(request, tmp_path) -> Iterator[str]:
    """Each test twice: on an SQLite file and on a fresh MySQL database."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
    else:
        with fresh_mysql_database() as url:
            yield url


def count_items(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(items)).scalar_one()


def count_predictions(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(predictions)).scalar_one()


@pytest.fixture(scope="session")
def iris_v2_repository(tmp_path_factory) -> Path:
    """A copy of models/ with an iris version 2 that scores differently (trained on every
    other row), for the batch job's lineage and rescoring."""
    from src.ml.train import export, load_data, make_classifier, model_path

    root = tmp_path_factory.mktemp("models-v2")
    shutil.copytree(REPO_ROOT / "models", root, dirs_exist_ok=True)
    features, target, _ = load_data("iris")
    export(make_classifier().fit(features[::2], target[::2]), features, model_path(root, "iris", 2))
    return root

"""Database engines for the batch pattern: MySQL/MariaDB through pymysql, or an SQLite file.

Engines are built in the API's lifespan and the job's `main()`, never at import time.
The tables are made and changed by the migrations (`python -m src.db upgrade`), not here.
"""

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

# A connection attempt to a dead server fails after this many seconds instead of hanging.
CONNECT_TIMEOUT_SECONDS = 5
# How long an SQLite writer waits for the other process (API or job) to release the file.
SQLITE_BUSY_TIMEOUT_SECONDS = 30
_BEGIN_IMMEDIATE = "sqlite_begin_immediate"


def create_db_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine for `url` with a pool of `pool_size` connections (one per worker thread)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, pool_size)
    return create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=pool_size,
        # After an outage the pool holds dead connections; a ping replaces them quietly.
        pool_pre_ping=True,
        pool_recycle=3600,
        # No gap locks: two jobs claiming chunks with SKIP LOCKED do not block each other.
        isolation_level="READ COMMITTED",
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )


def _sqlite_engine(url: str, pool_size: int) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # SQLAlchemy emits BEGIN itself (below), instead of pysqlite's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _use_wal(cursor)
        # FULL: a committed POST or chunk survives a power cut too, not only a crash of the
        # process; commits are per request and per chunk, so the extra fsync is cheap.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A writer takes the lock at BEGIN: upgrading a read transaction later can fail
        # with SQLITE_BUSY at once instead of waiting for the busy timeout.
        immediate = connection.get_execution_options().get(_BEGIN_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Put the file in WAL mode, so the API keeps reading while the job writes.

    The switch needs the file to itself and fails at once, without the busy timeout,
    while another process is connecting too (the API and the job starting together),
    so it is retried. The mode is stored in the file: later connections find it set.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal":
                return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()` for a transaction that writes; on SQLite it holds the write lock."""
    with engine.connect() as connection:
        connection.execution_options(**{_BEGIN_IMMEDIATE: True})
        with connection.begin():
            yield connection


def is_mysql(connection: Connection | Engine) -> bool:
    return connection.dialect.name in ("mysql", "mariadb")


def ping(engine: Engine) -> None:
    """Raise a SQLAlchemy error unless the database answers."""
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")

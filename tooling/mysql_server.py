"""Where the MySQL-compatible server for tests, benchmarks and `make results` is.

TEST_DATABASE_URL if set; else MYSQL_SERVER/MYSQL_PORT/MYSQL_USER/MYSQL_PASSWORD, with
defaults for the local MariaDB (127.0.0.1:3306, root, no password). The database part is
left to the caller, which makes a fresh database of its own.
"""

import os

import pymysql
from sqlalchemy.engine import URL, make_url


def mysql_server_url() -> URL:
    if os.environ.get("TEST_DATABASE_URL"):
        return make_url(os.environ["TEST_DATABASE_URL"]).set(drivername="mysql+pymysql")
    return URL.create(
        "mysql+pymysql",
        username=os.environ.get("MYSQL_USER") or "root",
        password=os.environ.get("MYSQL_PASSWORD") or None,
        host=os.environ.get("MYSQL_SERVER") or "127.0.0.1",
        port=int(os.environ.get("MYSQL_PORT") or 3306),
    )


def connect(server: URL, database: str | None = None, **options) -> pymysql.Connection:
    """A plain pymysql connection to the server (or one of its databases)."""
    return pymysql.connect(
        host=server.host,
        port=server.port or 3306,
        user=server.username,
        password=server.password or "",
        database=database,
        **options,
    )

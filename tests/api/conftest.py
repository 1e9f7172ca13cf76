"""Fixtures of the batch API's tests: one real API process per database, per module."""

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.batch_support import (  # noqa: F401
    database_url,
    fresh_mysql_database,
    iris_v2_repository,
    mysql_url,
    ready_engine,
    sqlite_url,
)
from tooling.processes import ProcessStarter, RunningProcess


@dataclass
class RunningApi:
    process: RunningProcess
    database_url: str
    client: httpx.Client

    def count_items(self) -> int:
        from tests.batch_support import count_items

        return count_items(ready_engine(self.database_url))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def api(request, tmp_path_factory) -> Iterator[RunningApi]:
    """`python -m src.api` on a fresh SQLite file or MySQL database, shared by a module."""
    directory = tmp_path_factory.mktemp(f"api-{request.param}")
    if request.param == "sqlite":
        database = contextlib.nullcontext(sqlite_url(directory))
    else:
        database = fresh_mysql_database()
    with database as url:
        starter = ProcessStarter(directory)
        # The API no longer makes tables: the migration step runs first, as in a deployment.
        ready_engine(url).dispose()
        try:
            process = starter.start_http("api", ["src.api"], {"DATABASE_URL": url})
            with httpx.Client(base_url=process.base_url, timeout=30) as client:
                yield RunningApi(process, url, client)
        finally:
            starter.stop_all()

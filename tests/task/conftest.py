"""Fixtures of the batch pattern's tests (fresh databases), shared from tests/batch_support.py."""

from tests.batch_support import database_url, iris_v2_repository, mysql_url  # noqa: F401

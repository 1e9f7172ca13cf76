"""Versioned schema migrations (Alembic, src/db/migrations): upgrade, and the start-up check.

`python -m src.db upgrade` brings a database to this release's schema; the API and the
job only check it (`require_current_schema`) and refuse to start on any other. A database
made by the release before migrations has the tables but no alembic_version: it is
stamped at revision 0001 (its exact schema), then upgraded like any other.
"""

import functools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_when_event_set,
    wait_fixed,
)

from src.db.engine import is_mysql, write_transaction
from src.db.retry import call_with_db_retry, wait_unless_stopped
from src.errors import StartupError

logger = logging.getLogger(__name__)


class _QuietContextLines(logging.Filter):
    """Drops Alembic's two lines per inspection ("Context impl ...", "Will assume ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl", "Will assume"))


logging.getLogger("alembic.runtime.migration").addFilter(_QuietContextLines())

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The schema the release before migrations created, and the revision that describes it.
UNVERSIONED_TABLES = frozenset({"items", "predictions", "id_blocks"})
UNVERSIONED_REVISION = "0001"
UPGRADE_COMMAND = "python -m src.db upgrade"
# Two upgraders at once (replicas' init containers) take turns on this server-wide lock.
_MYSQL_LOCK = "ml_serving_schema_migration"
MYSQL_LOCK_WAIT_SECONDS = 600


class SchemaError(StartupError):
    """The database's schema is not the one this release needs, or not one it knows."""


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The revision this release's code expects."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def describe_schema(connection: Connection) -> str:
    """The database's revision, or what it holds instead of one."""
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is not None:
        return revision
    tables = set(inspect(connection).get_table_names())
    if not tables & UNVERSIONED_TABLES:
        return "empty (no tables)"
    return "unversioned (tables of the release before migrations)"


def _is_unversioned(connection: Connection) -> bool:
    """Tables of the release before migrations and no alembic_version; raises if partial."""
    if MigrationContext.configure(connection).get_current_revision() is not None:
        return False
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables or not tables & UNVERSIONED_TABLES:
        return False
    if missing := UNVERSIONED_TABLES - tables:
        raise SchemaError(
            f"the database has {', '.join(sorted(tables & UNVERSIONED_TABLES))} but no "
            f"{', '.join(sorted(missing))} and no alembic_version: not a schema of this "
            "suite; restore it or use an empty database"
        )
    return True


def require_current_schema(engine: Engine) -> str:
    """This release's revision, or SchemaError with the one line that says what to run."""
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
        current = revision or describe_schema(connection)
    if revision == head:
        return head
    known = {script.revision for script in scripts.walk_revisions()}
    if revision is not None and revision not in known:
        raise SchemaError(
            f"database schema is at {revision}, which this release does not know (it needs "
            f"{head}): run the release that upgraded it"
        )
    raise SchemaError(
        f"database schema is at {current}, this release needs {head}: run {UPGRADE_COMMAND}"
    )


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection that alone may migrate until the block ends.

    MySQL: a named lock (GET_LOCK), held by the session across the migrations' own
    transactions. SQLite: one BEGIN IMMEDIATE transaction around everything, since SQLite
    runs DDL in transactions; a second upgrader waits for it, then finds nothing to do.
    """
    if not is_mysql(engine):
        with write_transaction(engine) as connection:
            yield connection
        return
    with engine.connect() as connection:
        # DDL commits at once on MySQL anyway: every statement on its own, so a migration
        # and its alembic_version row are stored as soon as each has run.
        connection.execution_options(isolation_level="AUTOCOMMIT")
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"),
            {"name": _MYSQL_LOCK, "wait": MYSQL_LOCK_WAIT_SECONDS},
        ).scalar()
        if got != 1:
            raise SchemaError(
                f"another upgrade held the migration lock for {MYSQL_LOCK_WAIT_SECONDS}s"
            )
        try:
            yield connection
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _MYSQL_LOCK})


def upgrade(engine: Engine, revision: str = "head") -> tuple[str, str]:
    """Migrate to `revision` (stamping an unversioned database first); (before, after)."""
    with _migration_lock(engine) as connection:
        config = alembic_config(connection)
        before = describe_schema(connection)
        if _is_unversioned(connection):
            logger.info("tables without alembic_version: stamping them at %s", UNVERSIONED_REVISION)
            command.stamp(config, UNVERSIONED_REVISION)
        command.upgrade(config, revision)
        after = describe_schema(connection)
    return before, after


def _require_downgradable(connection: Connection, config: Config, revision: str) -> None:
    """Each revision to undo may refuse (`require_downgradable(connection)` in its module)
    before any of them runs: MySQL commits each DDL statement at once, so a refusal halfway
    would leave the later revisions undone."""
    current = MigrationContext.configure(connection).get_current_revision()
    scripts = ScriptDirectory.from_config(config)
    for script in scripts.iterate_revisions(current, revision, select_for_downgrade=True):
        check = getattr(script.module, "require_downgradable", None)
        if check is not None:
            check(connection)


def downgrade(engine: Engine, revision: str) -> tuple[str, str]:
    """Migrate back to `revision` (e.g. 0001, or "base": no tables); (before, after)."""
    with _migration_lock(engine) as connection:
        config = alembic_config(connection)
        before = describe_schema(connection)
        _require_downgradable(connection, config, revision)
        command.downgrade(config, revision)
        after = describe_schema(connection)
    return before, after


def require_current_schema_when_reachable(
    engine: Engine, migration_wait: float = 0, **retry_options
) -> str:
    """`require_current_schema`, waiting for the database to come up first (src/db/retry.py).

    With `migration_wait`, a schema that is not this release's is checked again every
    second for that long: under an orchestrator that ignores start-up order (Swarm, a
    Kubernetes Deployment beside its migrate Job) the migration may still be running.
    """

    def check() -> str:
        return call_with_db_retry(
            lambda: require_current_schema(engine), what="checking the schema", **retry_options
        )

    if not migration_wait:
        return check()
    stop = stop_after_delay(migration_wait)
    if (stop_event := retry_options.get("stop_event")) is not None:
        stop = stop | stop_when_event_set(stop_event)
    retrying = Retrying(
        retry=retry_if_exception_type(SchemaError),
        wait=wait_fixed(1),
        stop=stop,
        sleep=functools.partial(wait_unless_stopped, stop_event or threading.Event()),
        before_sleep=lambda state: logger.info(
            "waiting for the migration (%s)", state.outcome.exception() if state.outcome else ""
        ),
        reraise=True,
    )
    return retrying(check)

"""`python -m src.db upgrade|current|downgrade`: the batch database's schema migrations.

The database comes from the same settings as the API and the job (DATABASE_URL, or
MYSQL_*, or the embedded SQLite file). `upgrade` waits for an unreachable server, as the
API and the job do, so a compose or Kubernetes start may run it before MySQL is up.
"""

import argparse
import logging

from src.db.engine import create_db_engine, ping
from src.db.migrate import describe_schema, downgrade, head_revision, upgrade
from src.db.retry import call_with_db_retry
from src.errors import or_exit
from src.observability import configure_logging
from src.settings import DatabaseSettings

logger = logging.getLogger("src.db")
# How long `upgrade` waits for the database to come up before it gives up (exit 1).
DATABASE_WAIT_SECONDS = 300


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.db", description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="action", required=True)
    up = actions.add_parser("upgrade", help="migrate to this release's schema (or REVISION)")
    up.add_argument("revision", nargs="?", default="head")
    actions.add_parser("current", help="print the database's revision and this release's")
    down = actions.add_parser("downgrade", help="migrate back to REVISION (base: no tables)")
    down.add_argument("revision")
    args = parser.parse_args(argv)

    settings = or_exit("db", DatabaseSettings)
    configure_logging(settings.log_level, settings.log_format)
    engine = create_db_engine(settings.resolved_database_url(), pool_size=1)
    where = engine.url.render_as_string(hide_password=True)
    try:
        if args.action == "current":
            with engine.connect() as connection:
                current = describe_schema(connection)
            print(f"database {where}: {current}; this release needs {head_revision()}")
            return
        # Only the connection is retried: a migration that failed half-way is for a human.
        call_with_db_retry(
            lambda: ping(engine), what=f"schema {args.action}", give_up_after=DATABASE_WAIT_SECONDS
        )
        migrate = upgrade if args.action == "upgrade" else downgrade
        before, after = or_exit("db", lambda: migrate(engine, args.revision))
        logger.info("database %s: schema %s -> %s", where, before, after)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()

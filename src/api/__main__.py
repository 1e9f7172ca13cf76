"""`python -m src.api`: the batch API, PORT and the database from the environment."""

from src.api.app import STARTUP_DATABASE_WAIT_SECONDS, create_app
from src.db.engine import create_db_engine
from src.db.migrate import require_current_schema_when_reachable
from src.errors import or_exit
from src.observability import configure_logging
from src.settings import ApiSettings
from src.web import serve


def require_current_schema(settings: ApiSettings) -> None:
    """Wait for the database, then exit with one line unless its schema is this release's."""
    engine = create_db_engine(settings.resolved_database_url(), pool_size=1)
    try:
        or_exit(
            "api",
            lambda: require_current_schema_when_reachable(
                engine,
                migration_wait=settings.migration_wait,
                give_up_after=STARTUP_DATABASE_WAIT_SECONDS,
            ),
        )
    finally:
        engine.dispose()


def main() -> None:
    settings = or_exit("api", ApiSettings)
    configure_logging(settings.log_level, settings.log_format)
    # Built before the wait for the database, so a bad label file stops start-up at once.
    app = or_exit("api", lambda: create_app(settings))
    require_current_schema(settings)
    serve(app, settings, settings.port)


if __name__ == "__main__":
    main()

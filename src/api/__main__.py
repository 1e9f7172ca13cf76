"""`python -m src.api`: the batch API, PORT and the database from the environment."""

from src.api.app import STARTUP_DATABASE_WAIT_SECONDS, load_batch_labels
from src.db.engine import create_db_engine
from src.db.retry import require_current_schema_when_reachable
from src.observability import configure_logging
from src.settings import ApiSettings
from src.startup import or_exit
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
    # Checked here so a missing label file stops start-up with one line, not a traceback.
    or_exit("api", lambda: load_batch_labels(settings.label_filepath))
    configure_logging(settings.log_level, settings.log_format)
    require_current_schema(settings)
    serve("src.api.app:app", settings, settings.port)


if __name__ == "__main__":
    main()

"""`python -m src.api`: the batch API, PORT and the database from the environment."""

from src.api.app import STARTUP_DATABASE_WAIT_SECONDS, BatchModel, create_app, load_batch_model
from src.db.engine import create_db_engine
from src.db.layout import require_layout
from src.db.migrate import require_current_schema_when_reachable
from src.errors import or_exit
from src.observability import configure_logging
from src.settings import ApiSettings
from src.web import serve


def require_current_database(settings: ApiSettings, model: BatchModel) -> None:
    """Wait for the database, then exit with one line unless its schema is this release's
    and its rows are of this model's width and classes (recorded on first start)."""
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
        or_exit(
            "api",
            lambda: require_layout(
                engine,
                model.row_spec.n_features,
                model.n_classes,
                f"model {model.path}",
            ),
        )
    finally:
        engine.dispose()


def main() -> None:
    settings = or_exit("api", ApiSettings)
    configure_logging(settings.log_level, settings.log_format)
    # Before the wait for the database, so a bad model or label file stops start-up at once.
    model = or_exit("api", lambda: load_batch_model(settings))
    app = create_app(settings, model)
    require_current_database(settings, model)
    serve(app, settings, settings.port)


if __name__ == "__main__":
    main()

"""`python -m src.services`: one class service, MODE and PORT from the environment."""

from src.errors import or_exit
from src.observability import configure_logging
from src.services.app import create_app
from src.services.mode import load_service_predictor, service_port, service_row_spec
from src.settings import ServiceSettings
from src.web import serve


def main() -> None:
    settings = or_exit("service", ServiceSettings)
    configure_logging(settings.log_level, settings.log_format)
    # Loaded once, here, so a wrong MODE or a missing model stops start-up with one line.
    predictor = or_exit(f"service {settings.mode}", lambda: load_service_predictor(settings))
    row_spec = or_exit(f"service {settings.mode}", lambda: service_row_spec(settings, predictor))
    port = or_exit("service", lambda: service_port(settings))
    serve(create_app(settings, predictor, row_spec), settings, port)


if __name__ == "__main__":
    main()

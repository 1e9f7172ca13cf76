"""`python -m src.services`: one class service, MODE and PORT from the environment."""

from src.errors import or_exit
from src.observability import configure_logging
from src.services.app import create_app
from src.services.mode import check_mode, service_port
from src.services.models import load_served_model
from src.settings import ServiceSettings
from src.web import serve


def main() -> None:
    settings = or_exit("service", ServiceSettings)
    configure_logging(settings.log_level, settings.log_format)
    # Loaded once, here, so a wrong MODE or a missing model stops start-up with one line.
    or_exit(f"service {settings.mode}", lambda: check_mode(settings))
    served, row_spec = or_exit(f"service {settings.mode}", lambda: load_served_model(settings))
    port = or_exit("service", lambda: service_port(settings))
    serve(create_app(settings, served, row_spec), settings, port)


if __name__ == "__main__":
    main()

"""`python -m src.services`: one class service, MODE and PORT from the environment."""

from src.services.model import load_service_predictor, service_port
from src.settings import ServiceSettings
from src.startup import or_exit
from src.web import serve


def main() -> None:
    settings = or_exit("service", ServiceSettings)
    # Load once here so a wrong MODE or a missing model stops start-up with one line.
    or_exit(f"service {settings.mode}", lambda: load_service_predictor(settings))
    serve("src.services.app:app", settings, or_exit("service", lambda: service_port(settings)))


if __name__ == "__main__":
    main()

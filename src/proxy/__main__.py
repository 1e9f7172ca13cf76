"""`python -m src.proxy`: the proxy, PORT and SERVICE_* from the environment."""

from src.errors import or_exit
from src.observability import configure_logging
from src.proxy.app import create_app
from src.settings import ProxySettings
from src.web import serve


def main() -> None:
    settings = or_exit("proxy", ProxySettings)
    configure_logging(settings.log_level, settings.log_format)
    serve(create_app(settings), settings, settings.port)


if __name__ == "__main__":
    main()

"""`python -m src.proxy`: the proxy, PORT and SERVICE_* from the environment."""

import asyncio
import logging

from src.errors import or_exit
from src.observability import configure_logging
from src.proxy.app import create_app
from src.proxy.shape import learn_row_spec
from src.settings import ProxySettings
from src.web import serve

logger = logging.getLogger(__name__)


def main() -> None:
    settings = or_exit("proxy", ProxySettings)
    configure_logging(settings.log_level, settings.log_format)
    # Before serving: the proxy checks rows at the width its services' models take.
    row_spec = or_exit(
        "proxy",
        lambda: asyncio.run(
            learn_row_spec(settings.services, settings.services_wait, settings.backend_timeout)
        ),
    )
    logger.info("proxy checks %s, as its class services' models take", row_spec.description)
    serve(create_app(settings, row_spec), settings, settings.port)


if __name__ == "__main__":
    main()

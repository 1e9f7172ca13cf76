"""`python -m bench.granian_app service|proxy`: a class service or the proxy served by granian.

The HTTP-stack A/B of `python -m bench.bench_proxy --scenario stack`: the same app, settings
and start-up as `python -m src.services` / `python -m src.proxy`, with granian (a Rust
HTTP server, embedded, one worker on uvloop) in place of uvicorn.
"""

import asyncio
import sys

import uvloop
from granian.constants import Interfaces
from granian.server.embed import Server

from src.observability import configure_logging
from src.proxy.app import create_app as create_proxy_app
from src.proxy.shape import learn_row_spec
from src.services.app import create_app as create_service_app
from src.services.mode import service_port
from src.services.models import load_served_model
from src.settings import ProxySettings, ServiceSettings


def main() -> None:
    if sys.argv[1:] == ["service"]:
        settings = ServiceSettings()
        configure_logging(settings.log_level, settings.log_format)
        app = create_service_app(settings, *load_served_model(settings))
        port = service_port(settings)
    else:
        settings = ProxySettings()
        configure_logging(settings.log_level, settings.log_format)
        row_spec = asyncio.run(
            learn_row_spec(settings.services, settings.services_wait, settings.backend_timeout)
        )
        app, port = create_proxy_app(settings, row_spec), settings.port
    server = Server(
        app, address=settings.host, port=port, interface=Interfaces.ASGI, log_enabled=False
    )
    uvloop.run(server.serve())


if __name__ == "__main__":
    main()

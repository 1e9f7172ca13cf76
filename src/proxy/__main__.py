"""`python -m src.proxy`: the proxy, PORT and SERVICE_* from the environment."""

from src.settings import ProxySettings
from src.startup import or_exit
from src.web import serve


def main() -> None:
    settings = or_exit("proxy", ProxySettings)
    serve("src.proxy.app:app", settings, settings.port)


if __name__ == "__main__":
    main()

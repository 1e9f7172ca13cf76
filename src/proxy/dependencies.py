"""What the proxy's routes take from its lifespan (shared by app.py and v2.py)."""

from typing import Annotated

from fastapi import Depends, Request

from src.proxy.backends import Backends
from src.settings import ProxySettings
from src.web import get_settings


async def get_backends(request: Request) -> Backends:
    return request.app.state.backends


BackendsDep = Annotated[Backends, Depends(get_backends)]
SettingsDep = Annotated[ProxySettings, Depends(get_settings)]

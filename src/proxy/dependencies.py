"""What the proxy's routes take from its lifespan (shared by app.py and v2.py)."""

from typing import Annotated

from fastapi import Depends, Request

from src.proxy.backends import Backends
from src.settings import ProxySettings


async def get_backends(request: Request) -> Backends:
    return request.app.state.backends


async def get_settings(request: Request) -> ProxySettings:
    return request.app.state.settings


BackendsDep = Annotated[Backends, Depends(get_backends)]
SettingsDep = Annotated[ProxySettings, Depends(get_settings)]

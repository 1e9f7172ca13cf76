"""What a class service's routes take from its lifespan (shared by app.py and v2.py)."""

from typing import Annotated

from fastapi import Depends, Request

from src.ml.predictor import Predictor
from src.settings import ServiceSettings


async def get_predictor(request: Request) -> Predictor:
    return request.app.state.predictor


async def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


PredictorDep = Annotated[Predictor, Depends(get_predictor)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]

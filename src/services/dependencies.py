"""What a class service's routes take from its app (shared by app.py and v2.py)."""

from typing import Annotated

from fastapi import Depends, Request

from src.ml.predictor import Predictor
from src.settings import ServiceSettings
from src.web import get_settings


async def get_predictor(request: Request) -> Predictor:
    return request.app.state.predictor


PredictorDep = Annotated[Predictor, Depends(get_predictor)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]

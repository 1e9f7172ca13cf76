"""What a class service's routes take from its app (shared by app.py, v2.py, repository.py)."""

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from src.services.models import ModelSlot, ModelUnavailable, ServedModel
from src.settings import ServiceSettings
from src.web import get_settings


async def get_model_slot(request: Request) -> ModelSlot:
    return request.app.state.models


async def get_served_model(request: Request) -> ServedModel:
    """The version serving this request, read once: a swap mid-request does not change it.

    The slot is read here, not through get_model_slot: one dependency fewer to resolve on
    every prediction.
    """
    slot: ModelSlot = request.app.state.models
    try:
        return slot.current
    except ModelUnavailable as error:
        raise HTTPException(status_code=503, detail=str(error)) from None


ModelSlotDep = Annotated[ModelSlot, Depends(get_model_slot)]
ServedModelDep = Annotated[ServedModel, Depends(get_served_model)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]

"""A class service's model repository routes (Triton's and KServe's repository extension).

`POST /v2/repository/index` lists the versions of the service's model; `.../load` loads
the newest (or MODEL_VERSION) and swaps it in with nothing dropped; `.../unload` stops
serving it. Operator-only: served only with ADMIN_TOKEN set, and only with its token.
"""

import logging

from fastapi import HTTPException
from pydantic import BaseModel

from src.errors import ModelLoadError
from src.ml.repository import ModelRepository
from src.oip.routing import UNKNOWN_MODEL, repository_router
from src.services.dependencies import ModelSlotDep, SettingsDep
from src.web import error_responses

logger = logging.getLogger(__name__)
router = repository_router()
LOAD_FAILED = error_responses(
    400, descriptions={400: "the version did not load or does not fit; the old one still serves"}
)


class RepositoryModel(BaseModel):
    name: str
    version: str
    state: str
    reason: str = ""


class LoadedModel(BaseModel):
    name: str
    version: str


def _check_name(model_name: str, settings: SettingsDep) -> None:
    if model_name != settings.mode:
        raise HTTPException(
            status_code=404,
            detail=f"unknown model {model_name!r}; this service serves {settings.mode!r}",
        )


@router.post("/index", response_model=list[RepositoryModel])
async def index(settings: SettingsDep, slot: ModelSlotDep) -> list[RepositoryModel]:
    served = slot.loaded
    versions = (
        [
            str(version)
            for version in ModelRepository(settings.model_repository).versions(settings.mode)
        ]
        if settings.model_filepath is None
        else [str(settings.model_version or 1)]
    )
    if served is not None and served.version not in versions:
        versions.append(served.version)  # its folder was removed since it was loaded
    return [
        RepositoryModel(name=settings.mode, version=version, state="READY")
        if served is not None and version == served.version
        else RepositoryModel(
            name=settings.mode,
            version=version,
            state="UNAVAILABLE",
            reason="unloaded" if served is None else "not the version served",
        )
        for version in versions
    ]


@router.post(
    "/models/{model_name}/load",
    response_model=LoadedModel,
    responses={**UNKNOWN_MODEL, **LOAD_FAILED},
)
async def load(model_name: str, settings: SettingsDep, slot: ModelSlotDep) -> LoadedModel:
    _check_name(model_name, settings)
    try:
        served = await slot.load()
    except ModelLoadError as error:
        logger.warning("load of %s refused, the old version still serves: %s", model_name, error)
        raise HTTPException(status_code=400, detail=f"not loaded: {error}") from None
    return LoadedModel(name=served.name, version=served.version)


@router.post("/models/{model_name}/unload", responses=UNKNOWN_MODEL)
async def unload(model_name: str, settings: SettingsDep, slot: ModelSlotDep) -> dict:
    _check_name(model_name, settings)
    slot.unload()
    return {}

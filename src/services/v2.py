"""A class service's Open Inference Protocol v2 routes: one model, named after MODE.

The model takes `input` FP32 [-1, F] (F: the model's width) and answers `probabilities`
FP32 [-1, 2] = [P(class), P(not class)] per row, the same numbers as POST /predict.
"""

from collections.abc import Callable

from fastapi import Depends, HTTPException

from src.oip.inference import InferenceBody, inference_openapi, inference_response
from src.oip.routing import BAD_TENSOR, UNKNOWN_MODEL, oip_router
from src.oip.schemas import (
    CLASS_OUTPUT_METADATA,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerReady,
    input_metadata,
)
from src.services.dependencies import ServedModelDep, SettingsDep
from src.web import RowSpecDep, error_responses

OUTPUT_NAME = CLASS_OUTPUT_METADATA.name
SERVER_NAME = "class-service"
router = oip_router(SERVER_NAME)


async def _known_model(model_name: str, settings: SettingsDep) -> None:
    # A dependency, so an unknown model is a 404 before its body is even validated.
    if model_name != settings.mode:
        raise HTTPException(
            status_code=404,
            detail=f"unknown model {model_name!r}; this service serves {settings.mode!r}",
        )


async def _known_version(model_version: str, served: ServedModelDep) -> None:
    # The request's served model is read once (FastAPI caches it per request), so the
    # version checked here is the one that answers, whatever a load does meanwhile.
    if model_version != served.version:
        raise HTTPException(
            status_code=404,
            detail=f"version {model_version!r} of {served.name!r} is not served; "
            f"version {served.version!r} is",
        )


KNOWN_MODEL = [Depends(_known_model)]
KNOWN_VERSION = [*KNOWN_MODEL, Depends(_known_version)]


def _model_route(method: str, suffix: str = "", **options) -> Callable:
    """The route at /models/{name}<suffix> and at /models/{name}/versions/{version}<suffix>."""

    def register(handler: Callable) -> Callable:
        responses = {**options.pop("responses", {}), **UNKNOWN_MODEL}
        for path, dependencies in (
            (f"/models/{{model_name}}{suffix}", KNOWN_MODEL),
            (f"/models/{{model_name}}/versions/{{model_version}}{suffix}", KNOWN_VERSION),
        ):
            router.add_api_route(
                path,
                handler,
                methods=[method],
                dependencies=dependencies,
                responses=responses,
                **options,
            )
        return handler

    return register


NOT_READY = error_responses(503, descriptions={503: "the model is unloaded"})


# Not ready is a 503, as clients read it (tritonclient's is_*_ready look at the status).
@router.get("/health/ready", response_model=ServerReady, responses=NOT_READY)
async def ready(served: ServedModelDep) -> ServerReady:
    # `__main__` loads the model before it serves; only an unload makes it not ready.
    return ServerReady(ready=True)


@_model_route("GET", response_model=ModelMetadata, response_model_exclude_none=True)
async def model_metadata(served: ServedModelDep, row_spec: RowSpecDep) -> ModelMetadata:
    return ModelMetadata(
        name=served.name,
        versions=[served.version],
        platform="onnxruntime_onnx",
        inputs=[input_metadata(row_spec)],
        outputs=[CLASS_OUTPUT_METADATA],
    )


@_model_route("GET", "/ready", response_model=ModelReady, responses=NOT_READY)
async def model_ready(served: ServedModelDep) -> ModelReady:
    return ModelReady(name=served.name, ready=True)


@_model_route(
    "POST",
    "/infer",
    response_model=InferenceResponse,
    response_model_exclude_none=True,
    responses=BAD_TENSOR,
    openapi_extra=inference_openapi(),
)
async def infer(body: InferenceBody, served: ServedModelDep):
    body.wanted_outputs([OUTPUT_NAME])
    probabilities = served.predict_proba(body.rows)
    return inference_response(
        body, served.name, {OUTPUT_NAME: probabilities}, model_version=served.version
    )

"""A class service's Open Inference Protocol v2 routes: one model, named after MODE.

The model takes `input` FP32 [-1, F] (F: the model's width) and answers `probabilities`
FP32 [-1, 2] = [P(class), P(not class)] per row, the same numbers as POST /predict.
"""

from fastapi import Depends, HTTPException

from src.oip.inference import InferenceBody, inference_openapi, inference_response
from src.oip.routing import BAD_TENSOR, UNKNOWN_MODEL, oip_router
from src.oip.schemas import (
    CLASS_OUTPUT_METADATA,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerReady,
    TensorError,
    input_metadata,
    selected_outputs,
)
from src.services.dependencies import PredictorDep, SettingsDep
from src.web import RowSpecDep

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


KNOWN_MODEL = [Depends(_known_model)]


@router.get("/health/ready", response_model=ServerReady)
async def ready(predictor: PredictorDep) -> ServerReady:
    # `__main__` loads the model before it serves, so a served request is ready.
    return ServerReady(ready=predictor.loaded)


@router.get(
    "/models/{model_name}",
    response_model=ModelMetadata,
    responses=UNKNOWN_MODEL,
    dependencies=KNOWN_MODEL,
)
async def model_metadata(settings: SettingsDep, row_spec: RowSpecDep) -> ModelMetadata:
    return ModelMetadata(
        name=settings.mode,
        platform="onnxruntime_onnx",
        inputs=[input_metadata(row_spec)],
        outputs=[CLASS_OUTPUT_METADATA],
    )


@router.get(
    "/models/{model_name}/ready",
    response_model=ModelReady,
    responses=UNKNOWN_MODEL,
    dependencies=KNOWN_MODEL,
)
async def model_ready(settings: SettingsDep, predictor: PredictorDep) -> ModelReady:
    return ModelReady(name=settings.mode, ready=predictor.loaded)


@router.post(
    "/models/{model_name}/infer",
    response_model=InferenceResponse,
    response_model_exclude_none=True,
    responses={**BAD_TENSOR, **UNKNOWN_MODEL},
    dependencies=KNOWN_MODEL,
    openapi_extra=inference_openapi(),
)
async def infer(body: InferenceBody, settings: SettingsDep, predictor: PredictorDep):
    try:
        selected_outputs(body.request, [OUTPUT_NAME])
    except TensorError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    probabilities = predictor.predict_proba(body.rows)
    return inference_response(body, settings.mode, {OUTPUT_NAME: probabilities})

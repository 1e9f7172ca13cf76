"""A class service's Open Inference Protocol v2 routes: one model, named after MODE.

The model takes `input` FP32 [-1, 4] and answers `probabilities` FP32 [-1, 2] =
[P(class), P(not class)] per row, the same numbers as POST /predict.
"""

from fastapi import Depends, HTTPException

from src.oip.routing import BAD_TENSOR, UNKNOWN_MODEL, oip_router
from src.oip.schemas import (
    CLASS_OUTPUT_METADATA,
    INPUT_METADATA,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerReady,
    TensorError,
    feature_rows,
    fp32_output,
    selected_outputs,
)
from src.services.dependencies import PredictorDep, SettingsDep

OUTPUT_NAME = CLASS_OUTPUT_METADATA.name
SERVER_NAME = "iris-class-service"
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
async def model_metadata(settings: SettingsDep) -> ModelMetadata:
    return ModelMetadata(
        name=settings.mode,
        platform="onnxruntime_onnx",
        inputs=[INPUT_METADATA],
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
)
async def infer(
    body: InferenceRequest, settings: SettingsDep, predictor: PredictorDep
) -> InferenceResponse:
    try:
        rows = feature_rows(body, settings.max_rows)
        selected_outputs(body, [OUTPUT_NAME])
        probabilities = predictor.predict_proba(rows)
    except TensorError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    outputs = [fp32_output(OUTPUT_NAME, probabilities)]
    return InferenceResponse(model_name=settings.mode, id=body.id, outputs=outputs)

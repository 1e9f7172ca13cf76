"""A class service: one binary ONNX classifier, chosen by MODE, behind /predict.

Start with `python -m src.services` (MODE and PORT from the environment) or
`uvicorn src.services.app:app --port 9101`.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from src.ml.predictor import Predictor
from src.observability import configure_logging
from src.schemas import SAMPLE_ROW, BinaryPrediction, HealthResponse, ValidRequest
from src.services import v2
from src.services.dependencies import PredictorDep, SettingsDep
from src.services.model import load_service_predictor
from src.settings import ServiceSettings
from src.web import BODY_ERRORS, create_app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = ServiceSettings()
    configure_logging(settings.log_level, settings.log_format)
    app.state.settings = settings
    app.state.predictor = load_service_predictor(settings)
    yield


app = create_app(
    "iris class service",
    lifespan,
    description="A binary classifier: [P(this class), P(not this class)] per row.",
)
app.include_router(v2.router)


def _binary_prediction(predictor: Predictor, rows) -> BinaryPrediction:
    predictions = predictor.predict_proba(rows).tolist()
    return BinaryPrediction(prediction=predictions[0], predictions=predictions)


@app.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    return HealthResponse()


@app.get("/metadata")
async def metadata(settings: SettingsDep, predictor: PredictorDep) -> dict:
    return {
        "mode": settings.mode,
        "model_filepath": str(predictor.model_path),
        "data_type": "float32",
        "data_structure": "(N, 4)",
        "data_sample": [SAMPLE_ROW],
        "prediction_type": "float32",
        "prediction_structure": "(N, 2): [P(mode), P(not mode)]",
        "max_rows": settings.max_rows,
    }


@app.get("/predict/test", response_model=BinaryPrediction)
async def predict_test(predictor: PredictorDep) -> BinaryPrediction:
    return _binary_prediction(predictor, [SAMPLE_ROW])


@app.post("/predict", response_model=BinaryPrediction, responses=BODY_ERRORS)
async def predict(body: ValidRequest, predictor: PredictorDep) -> BinaryPrediction:
    # One vectorised call; small enough to run on the event loop without a thread hop.
    return _binary_prediction(predictor, body.as_array())

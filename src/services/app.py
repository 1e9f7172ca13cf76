"""A class service: one binary ONNX classifier, chosen by MODE, behind /predict.

Start with `python -m src.services` (MODE and PORT from the environment).
"""

import numpy as np
from fastapi import APIRouter, FastAPI

from src import web
from src.bodies import ValidRowsBody, json_response, rows_body_openapi
from src.ml.predictor import Predictor
from src.oip.routing import include_oip_router
from src.schemas import BinaryPrediction, RowSpec, ServiceHealth
from src.services import v2
from src.services.dependencies import PredictorDep, SettingsDep
from src.settings import ServiceSettings
from src.web import BODY_ERRORS, RowSpecDep


def create_app(
    settings: ServiceSettings, predictor: Predictor, row_spec: RowSpec | None = None
) -> FastAPI:
    """A class service's app around its loaded model (nothing to open or close per process).

    `row_spec`: the model's width with the model set's example row; zeros when omitted.
    """
    row_spec = row_spec or RowSpec.of_width(predictor.n_features)
    app = web.create_app(
        f"class service: {settings.mode}",
        settings,
        description=(
            f"A binary classifier of {row_spec.description}: "
            f"[P({settings.mode}), P(not {settings.mode})] per row."
        ),
        row_spec=row_spec,
    )
    app.state.predictor = predictor
    app.include_router(router)
    include_oip_router(app, v2.router)
    return app


router = APIRouter()


def _binary_prediction(predictor: Predictor, rows):
    # Already the BinaryPrediction shape (the declared response_model documents it),
    # written from the array: no Python float per probability, no re-validation.
    predictions = predictor.predict_proba(rows).astype(np.float64)
    return json_response({"prediction": predictions[0], "predictions": predictions})


@router.get("/health", response_model=ServiceHealth)
async def health(settings: SettingsDep, row_spec: RowSpecDep) -> ServiceHealth:
    return ServiceHealth(model=settings.mode, features=row_spec.n_features)


@router.get("/metadata")
async def metadata(settings: SettingsDep, predictor: PredictorDep, row_spec: RowSpecDep) -> dict:
    return {
        "mode": settings.mode,
        "model_filepath": str(predictor.model_path),
        "data_type": "float32",
        "data_structure": row_spec.structure,
        "data_sample": [row_spec.sample],
        "prediction_type": "float32",
        "prediction_structure": "(N, 2): [P(mode), P(not mode)]",
        "max_rows": settings.max_rows,
    }


@router.get("/predict/test", response_model=BinaryPrediction)
async def predict_test(predictor: PredictorDep, row_spec: RowSpecDep):
    return _binary_prediction(predictor, np.array([row_spec.sample]))


@router.post(
    "/predict",
    response_model=BinaryPrediction,
    responses=BODY_ERRORS,
    openapi_extra=rows_body_openapi(),
)
async def predict(body: ValidRowsBody, predictor: PredictorDep):
    # One vectorised call; small enough to run on the event loop without a thread hop.
    return _binary_prediction(predictor, body.rows)

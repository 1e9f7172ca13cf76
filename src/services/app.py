"""A class service: one binary ONNX classifier, chosen by MODE, behind /predict.

Start with `python -m src.services` (MODE and PORT from the environment).
"""

import numpy as np
from fastapi import APIRouter, FastAPI

from src import web
from src.bodies import ValidRowsBody, json_response, rows_body_openapi
from src.oip.routing import include_oip_router
from src.schemas import BinaryPrediction, RowSpec, ServiceHealth
from src.services import repository, v2
from src.services.dependencies import ModelSlotDep, ServedModelDep, SettingsDep
from src.services.models import ModelSlot, ServedModel
from src.settings import ServiceSettings
from src.web import BODY_ERRORS, RowSpecDep


def create_app(
    settings: ServiceSettings, served: ServedModel, row_spec: RowSpec | None = None
) -> FastAPI:
    """A class service's app around its loaded model (nothing to open or close per process).

    `row_spec`: the model's width with the model set's example row; zeros when omitted.
    With ADMIN_TOKEN set, the model repository routes can load a newer version.
    """
    row_spec = row_spec or RowSpec.of_width(served.predictor.n_features)
    app = web.create_app(
        f"class service: {settings.mode}",
        settings,
        description=(
            f"A binary classifier of {row_spec.description}: "
            f"[P({settings.mode}), P(not {settings.mode})] per row."
        ),
        row_spec=row_spec,
    )
    app.state.models = ModelSlot(settings, served, row_spec)
    app.include_router(router)
    include_oip_router(app, v2.router)
    if settings.admin_token is not None:
        app.include_router(repository.router)
    return app


router = APIRouter()


def _binary_prediction(served: ServedModel, rows):
    # Already the BinaryPrediction shape (the declared response_model documents it),
    # written from the array: no Python float per probability, no re-validation.
    predictions = served.predict_proba(rows).astype(np.float64)
    return json_response(
        {
            "prediction": predictions[0],
            "predictions": predictions,
            "model_version": served.version,
        }
    )


@router.get("/health", response_model=ServiceHealth)
async def health(settings: SettingsDep, row_spec: RowSpecDep, slot: ModelSlotDep) -> ServiceHealth:
    served = slot.loaded
    return ServiceHealth(
        model=settings.mode,
        features=row_spec.n_features,
        model_version=served.version if served else None,
    )


@router.get("/metadata")
async def metadata(settings: SettingsDep, served: ServedModelDep, row_spec: RowSpecDep) -> dict:
    return {
        "mode": settings.mode,
        "model_version": served.version,
        "model_filepath": str(served.predictor.model_path),
        "data_type": "float32",
        "data_structure": row_spec.structure,
        "data_sample": [row_spec.sample],
        "prediction_type": "float32",
        "prediction_structure": "(N, 2): [P(mode), P(not mode)]",
        "max_rows": settings.max_rows,
    }


@router.get("/predict/test", response_model=BinaryPrediction)
async def predict_test(served: ServedModelDep, row_spec: RowSpecDep):
    return _binary_prediction(served, np.array([row_spec.sample]))


@router.post(
    "/predict",
    response_model=BinaryPrediction,
    responses=BODY_ERRORS,
    openapi_extra=rows_body_openapi(),
)
async def predict(body: ValidRowsBody, served: ServedModelDep):
    # One vectorised call; small enough to run on the event loop without a thread hop.
    return _binary_prediction(served, body.rows)

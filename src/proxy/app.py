"""The horizontal-microservice proxy: fans each request out to every class service.

Start with `python -m src.proxy`; backends come from `SERVICE_<NAME>` variables.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from src.observability import configure_logging
from src.proxy.backends import BackendResult, Backends, create_client
from src.schemas import (
    SAMPLE_ROW,
    BinaryPrediction,
    HealthResponse,
    LabelPrediction,
    ValidRequest,
)
from src.settings import ProxySettings
from src.web import create_app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = ProxySettings()
    configure_logging(settings.log_level, settings.log_format)
    app.state.settings = settings
    async with create_client(settings.backend_connections, settings.backend_keepalive) as client:
        app.state.backends = Backends(
            settings.services,
            client,
            settings.backend_timeout,
            timeouts=settings.backend_timeouts,
            failure_threshold=settings.breaker_failure_threshold,
            cooldown=settings.breaker_cooldown,
            hard=settings.hard_dependencies,
        )
        yield


async def get_backends(request: Request) -> Backends:
    return request.app.state.backends


BackendsDep = Annotated[Backends, Depends(get_backends)]

app = create_app(
    "iris proxy",
    lifespan,
    description="Fans requests out to one binary classifier per iris class and aggregates them.",
)


def _all_failed(results: dict[str, BackendResult]) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={
            "error": "every service failed",
            "services": {name: result.as_error_entry() for name, result in results.items()},
        },
    )


def _required_failed(
    backends: Backends, results: dict[str, BackendResult], answered: set[str]
) -> JSONResponse | None:
    """503 naming the hard dependencies (HARD_DEPENDENCIES) that did not answer, if any."""
    missing = backends.missing_required(answered)
    if not missing:
        return None
    return JSONResponse(
        status_code=503,
        content={
            "error": f"required service failed: {', '.join(missing)}",
            "required": missing,
            "unavailable": [name for name in results if name not in answered],
            "services": {
                name: result.as_error_entry()
                for name, result in results.items()
                if name not in answered
            },
        },
    )


def _keyed(results: dict[str, BackendResult]) -> dict:
    return {
        name: result.body if result.ok else result.as_error_entry()
        for name, result in results.items()
    }


async def _fan_out(backends: Backends, method: str, path: str, payload: dict | None = None):
    results = await backends.call_all(method, path, payload, expect=BinaryPrediction)
    if not any(result.ok for result in results.values()):
        return _all_failed(results)
    answered = {name for name, result in results.items() if result.ok}
    return _required_failed(backends, results, answered) or _keyed(results)


@app.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    return HealthResponse()


@app.get("/health/all")
async def health_all(backends: BackendsDep):
    # The probes go through the breakers like any call: an open circuit is reported
    # without calling the service, and a probe after the cool-down may be the trial.
    results = await backends.call_all("GET", "/health")
    body = {
        name: {
            **(result.body if result.ok and isinstance(result.body, dict) else {}),
            **({} if result.ok else {"health": "error", **result.as_error_entry()}),
            "circuit": backends.circuit(name),
        }
        for name, result in results.items()
    }
    answered = {name for name, result in results.items() if result.ok}
    status = 200 if answered and not backends.missing_required(answered) else 503
    return JSONResponse(status_code=status, content=body)


@app.get("/metadata")
async def metadata(request: Request, backends: BackendsDep) -> dict:
    return {
        "services": backends.services,
        "backend_timeout_seconds": backends.timeout,
        "backend_timeouts_seconds": backends.timeouts,
        "hard_dependencies": list(backends.hard),
        "data_type": "float32",
        "data_structure": "(N, 4)",
        "data_sample": [SAMPLE_ROW],
        "prediction_structure": "per service: (N, 2) = [P(class), P(not class)]",
        "max_rows": request.app.state.settings.max_rows,
    }


@app.post("/predict")
async def predict(body: ValidRequest, backends: BackendsDep):
    return await _fan_out(backends, "POST", "/predict", {"data": body.data})


@app.post("/predict/label", response_model=LabelPrediction)
async def predict_label(body: ValidRequest, backends: BackendsDep):
    results = await backends.call_all(
        "POST", "/predict", {"data": body.data}, expect=BinaryPrediction
    )
    # A service that answered for another number of rows cannot be compared row by row.
    healthy = [
        result
        for result in results.values()
        if result.ok and len(result.body["predictions"]) == len(body.data)
    ]
    answered = {result.service for result in healthy}
    if not healthy:
        return _all_failed(results)
    if required_failed := _required_failed(backends, results, answered):
        return required_failed
    # Column 0 of each service's answer is P(its class); pick the most probable per row.
    class_probability = np.array(
        [[row[0] for row in result.body["predictions"]] for result in healthy]
    )
    best = class_probability.argmax(axis=0)
    labelled = [
        {"proba": float(class_probability[winner, row]), "label": healthy[winner].service}
        for row, winner in enumerate(best)
    ]
    # Already the LabelPrediction shape (the declared response_model documents it):
    # answering it directly spares re-validating up to MAX_ROWS entries per request.
    return JSONResponse(
        {
            "prediction": labelled[0],
            "predictions": labelled,
            "unavailable": [name for name in results if name not in answered],
        }
    )


@app.get("/predict/get/test")
async def predict_get_test(backends: BackendsDep):
    return await _fan_out(backends, "GET", "/predict/test")


@app.post("/predict/post/test")
async def predict_post_test(backends: BackendsDep):
    return await _fan_out(backends, "POST", "/predict", {"data": [SAMPLE_ROW]})

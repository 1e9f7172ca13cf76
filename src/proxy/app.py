"""The horizontal-microservice proxy: fans each request out to every class service.

Start with `python -m src.proxy`; backends come from `SERVICE_<NAME>` variables.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response

from src import web
from src.bodies import ValidRowsBody, rows_body_openapi
from src.oip.routing import include_oip_router
from src.proxy import repository, v2
from src.proxy.answers import required_failed, services_failed
from src.proxy.backends import BackendResult, Backends, create_session
from src.proxy.bodies import class_probabilities
from src.proxy.degraded import count_if_degraded
from src.proxy.dependencies import BackendsDep, SettingsDep
from src.proxy.ensemble import best_labels
from src.schemas import HealthResponse, LabelPrediction, RowSpec
from src.settings import ProxySettings
from src.web import BODY_ERRORS, RowSpecDep, error_responses


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: ProxySettings = app.state.settings
    async with create_session(settings.backend_connections, settings.backend_keepalive) as session:
        app.state.backends = Backends(
            settings.services,
            session,
            settings.backend_timeout,
            timeouts=settings.backend_timeouts,
            failure_threshold=settings.breaker_failure_threshold,
            cooldown=settings.breaker_cooldown,
            hard=settings.hard_dependencies,
            connect_timeout=settings.backend_connect_timeout,
            resolve_interval=settings.backend_resolve_interval,
            eject_after=settings.backend_eject_after,
            ejection_seconds=settings.backend_ejection,
        )
        yield


def create_app(settings: ProxySettings, row_spec: RowSpec) -> FastAPI:
    """The proxy's app; its lifespan opens the pooled session to the class services.

    `row_spec`: the width of its services' models (src/proxy/shape.py learns it).
    """
    app = web.create_app(
        "proxy",
        settings,
        lifespan,
        description=(
            f"Fans requests ({row_spec.description}) out to one binary classifier per class "
            "and aggregates them."
        ),
        row_spec=row_spec,
    )
    app.include_router(router)
    include_oip_router(app, v2.router)
    if settings.admin_token is not None:
        app.include_router(repository.router)
    return app


router = APIRouter()
ALL_FAILED = error_responses(503, descriptions={503: "every service failed"})
# The routes that read their body themselves declare it for the OpenAPI document.
ROWS_BODY = rows_body_openapi()


def _json(content) -> Response:
    # orjson: about ten times faster than the json module on a 10,000-row answer.
    return Response(orjson.dumps(content), media_type="application/json")


def _keyed(results: dict[str, BackendResult]) -> Response:
    # Each service's checked answer goes out as the bytes it sent, not decoded and re-encoded.
    return _json(
        {
            name: orjson.Fragment(result.raw) if result.ok else result.as_error_entry()
            for name, result in results.items()
        }
    )


async def _fan_out(backends: Backends, method: str, path: str, content: bytes | None = None):
    results = await backends.call_all(method, path, content, expect=class_probabilities)
    if not any(result.ok for result in results.values()):
        return services_failed("every service failed", results)
    answered = {name for name, result in results.items() if result.ok}
    if failed := required_failed(backends, results, answered):
        return failed
    count_if_degraded("keyed", set(results) - answered)
    return _keyed(results)


@router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/health/all",
    responses={503: {"description": "no service answered; each entry says why"}},
)
async def health_all(backends: BackendsDep, row_spec: RowSpecDep):
    # The probes go through the breakers like any call: an open circuit is reported
    # without calling the service, and a probe after the cool-down may be the trial.
    results = await backends.call_all("GET", "/health")
    results = {name: _same_width(result, row_spec) for name, result in results.items()}
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


def _same_width(result: BackendResult, row_spec: RowSpec) -> BackendResult:
    """`result`, or a failure when the service's model takes rows of another width.

    A model swapped for a wider or narrower one behind a running proxy would refuse
    every row the proxy lets through; /health/all names it instead.
    """
    features = result.body.get("features") if result.ok and isinstance(result.body, dict) else None
    if not isinstance(features, int) or features == row_spec.n_features:
        return result
    return BackendResult(
        result.service,
        error="width_mismatch",
        detail=(
            f"its model takes rows of {features} numbers; the proxy checks "
            f"{row_spec.description} (restart the proxy once every service serves the new width)"
        ),
    )


@router.get("/metadata")
async def metadata(backends: BackendsDep, settings: SettingsDep, row_spec: RowSpecDep) -> dict:
    return {
        "services": backends.services,
        "backend_timeout_seconds": backends.timeout,
        "backend_timeouts_seconds": backends.timeouts,
        "hard_dependencies": list(backends.hard),
        "data_type": "float32",
        "data_structure": row_spec.structure,
        "data_sample": [row_spec.sample],
        "prediction_structure": "per service: (N, 2) = [P(class), P(not class)]",
        "max_rows": settings.max_rows,
    }


# The two routes that take rows read the body themselves (ValidRowsBody): a valid body is
# checked without a Python object per number and forwarded as it came.
@router.post("/predict", responses={**BODY_ERRORS, **ALL_FAILED}, openapi_extra=ROWS_BODY)
async def predict(body: ValidRowsBody, backends: BackendsDep):
    return await _fan_out(backends, "POST", "/predict", body.raw)


@router.post(
    "/predict/label",
    response_model=LabelPrediction,
    responses={**BODY_ERRORS, **ALL_FAILED},
    openapi_extra=ROWS_BODY,
)
async def predict_label(body: ValidRowsBody, backends: BackendsDep):
    results = await backends.call_all("POST", "/predict", body.raw, expect=class_probabilities)
    labels = best_labels(results, len(body.rows))
    if labels is None:
        return services_failed("every service failed", results)
    answered = set(results) - set(labels.unavailable)
    if failed := required_failed(backends, results, answered):
        return failed
    count_if_degraded("label", labels.unavailable)
    labelled = [
        {"proba": proba, "label": label}
        for label, proba in zip(labels.labels, labels.probas, strict=True)
    ]
    # Already the LabelPrediction shape (the declared response_model documents it):
    # answering it directly spares re-validating up to MAX_ROWS entries per request.
    return _json(
        {
            "prediction": labelled[0],
            "predictions": labelled,
            "unavailable": labels.unavailable,
            "model_versions": labels.model_versions,
        }
    )


@router.get("/predict/get/test", responses=ALL_FAILED)
async def predict_get_test(backends: BackendsDep):
    return await _fan_out(backends, "GET", "/predict/test")


@router.post("/predict/post/test", responses=ALL_FAILED)
async def predict_post_test(backends: BackendsDep, row_spec: RowSpecDep):
    return await _fan_out(backends, "POST", "/predict", orjson.dumps({"data": [row_spec.sample]}))

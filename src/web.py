"""What every HTTP process shares: its one error shape, request context, /metrics, serving.

Each process's `__main__` builds its settings once, checks what must be checked, and
hands them to its `create_app(settings)`, which builds on `create_app` here.
"""

import gc
import logging
from collections.abc import Callable
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from src.admission import (
    AdmissionGate,
    AdmissionMiddleware,
    BodyLimitMiddleware,
    overloaded_response,
)
from src.connections import GuardedHttpToolsProtocol
from src.docs_pages import add_offline_docs
from src.observability import RequestContextMiddleware, request_id_var
from src.schemas import ErrorResponse, PredictRequest, RowSpec, request_model, row_limit_error
from src.settings import CommonSettings

logger = logging.getLogger(__name__)
# The component the routes that take rows refer to (src/bodies.py rows_body_openapi).
PREDICT_REQUEST = "PredictRequest"
# Allocations between two passes of the youngest generation (Python's default is 700).
GC_FIRST_THRESHOLD = 50_000
# A 10,000-row request of strings would otherwise list 40,000 errors.
MAX_LISTED_ERRORS = 20

_ERROR_DESCRIPTIONS = {
    400: "the body is not UTF-8 (FastAPI cannot decode it)",
    404: "no such resource",
    413: "the body is larger than MAX_BODY_BYTES; the connection is closed",
    422: "the request does not follow the schema; `detail` lists the problems",
    500: "an unexpected error; the log has the stack trace under `request_id`",
    503: "a service or the database this answer needs is unavailable",
}
# What admission control (src/admission.py) can answer on any route.
_ADMISSION_DESCRIPTIONS = {
    503: "overloaded (`Retry-After` says when to retry), or a service or the database "
    "this answer needs is unavailable",
    504: "the caller's deadline (X-Request-Timeout-Ms) passed before the work started",
}


def error_responses(*codes: int, descriptions: dict[int, str] | None = None) -> dict:
    """OpenAPI `responses=` for the error statuses a route can answer, all in ErrorResponse."""
    described = {**_ERROR_DESCRIPTIONS, **(descriptions or {})}
    return {code: {"model": ErrorResponse, "description": described[code]} for code in codes}


# What every route with a JSON body can answer besides its own statuses.
BODY_ERRORS = error_responses(400, 422)


def error_response(
    status_code: int, error: str, *, headers: dict[str, str] | None = None, **fields: Any
) -> JSONResponse:
    """The one way an error is answered: an ErrorResponse, without the keys it leaves unset.

    Built through the schema, so no error body can carry a key the OpenAPI document omits.
    """
    body = ErrorResponse(error=error, **fields).model_dump(mode="json", exclude_none=True)
    return JSONResponse(status_code=status_code, content=body, headers=headers)


def _describe(error: dict) -> dict:
    # Only loc/msg/type: the raw input may be huge or NaN, which JSON cannot carry.
    return {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return validation_error_response(request, exc, 422)


def validation_error_response(
    request: Request, exc: RequestValidationError, status_code: int
) -> JSONResponse:
    """The schema's problems (up to MAX_LISTED_ERRORS of them) as one error answer."""
    errors = exc.errors()
    listed = [_describe(error) for error in errors[:MAX_LISTED_ERRORS]]
    summary = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in listed[:3]
    )
    more = len(errors) - MAX_LISTED_ERRORS
    hint = None
    has_body = request.method in ("POST", "PUT", "PATCH")
    if has_body and "json" not in request.headers.get("content-type", ""):
        # curl -d sends a form content type, which FastAPI does not parse as JSON.
        hint = "send the body as JSON with the header 'Content-Type: application/json'"
    return error_response(
        status_code,
        f"invalid request: {summary}",
        detail=listed,
        more_errors=more if more > 0 else None,
        hint=hint,
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # 404s, 405s and raised HTTPExceptions in the same {"error": ...} shape as the rest.
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error", request_id=request_id_var.get())


async def _metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(
    title: str,
    settings: CommonSettings,
    lifespan: Callable | None = None,
    description: str = "",
    row_spec: RowSpec | None = None,
) -> FastAPI:
    """A FastAPI app with the suite's error handlers, request middleware, /metrics and docs.

    `settings` is the process's one settings object, which routes reach by `get_settings`.
    `row_spec` is the width and example row of the model served (`get_row_spec`): read from
    the model file, or learnt by the proxy from its services before it serves.
    """
    app = FastAPI(
        title=title,
        description=description,
        lifespan=lifespan,
        responses=error_responses(413, 500, 503, 504, descriptions=_ADMISSION_DESCRIPTIONS),
        docs_url=None,  # add_offline_docs serves /docs and /redoc without a CDN
        redoc_url=None,
        # The suite's metrics are Prometheus (src/observability.py); with FastAPI's own
        # OpenTelemetry on, every request would ask OpenTelemetry whether it is configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.row_spec = row_spec
    app.openapi = _with_request_schema(app)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    # The last added runs first: admission, then the request's log line, then the body limit.
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.resolved_max_body_bytes(),
        error_response=error_response,
    )
    app.add_middleware(RequestContextMiddleware)
    # One gate for the app and its connections (`serve`), which refuse when its queue is full.
    app.state.admission_gate = AdmissionGate(
        settings.max_in_flight,
        settings.admission_wait,
        settings.process_name,
        settings.admission_queue,
    )
    app.add_middleware(
        AdmissionMiddleware,
        gate=app.state.admission_gate,
        default_timeout=settings.request_timeout,
        error_response=error_response,
    )
    app.add_api_route("/metrics", _metrics, methods=["GET"], include_in_schema=False)
    add_offline_docs(app)
    return app


def _with_request_schema(app: FastAPI) -> Callable[[], dict]:
    """app.openapi with the PredictRequest of the app's row width among its components."""
    build = app.openapi

    def openapi() -> dict:
        schema = build()
        if app.state.row_spec is not None:
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components[PREDICT_REQUEST] = request_model(app.state.row_spec).model_json_schema()
        return schema

    return openapi


async def get_settings(request: Request) -> CommonSettings:
    """The settings the process's app was created with (each process narrows the type)."""
    return request.app.state.settings


async def get_row_spec(request: Request) -> RowSpec:
    """The width and example row of the model the process serves."""
    return request.app.state.row_spec


RowSpecDep = Annotated[RowSpec, Depends(get_row_spec)]


def checked_row_limit(body: PredictRequest, max_rows: int) -> PredictRequest:
    """`body` once MAX_ROWS is checked too, in the same 422 shape as the schema's errors."""
    if problem := row_limit_error(len(body.data), max_rows):
        raise RequestValidationError(
            [{"type": "too_long", "loc": ("body", "data"), "msg": problem}]
        )
    return body


def settle_garbage_collector() -> None:
    """Keep Python's cyclic garbage collector off the hot path of large requests.

    A 10,000-row body or answer parsed by orjson is ten thousand lists: enough to set off
    several collections per request, and the oldest generation's pass walks every object
    the process has ever kept (its modules, FastAPI's routes, the model's session).
    Freezing what start-up made takes those out of every later pass, and a higher first
    threshold makes passes rarer; the lists are freed by reference counting anyway.
    """
    gc.freeze()
    gc.set_threshold(GC_FIRST_THRESHOLD, *gc.get_threshold()[1:])


def serve(app: FastAPI, settings: CommonSettings, port: int) -> None:
    """Serve one process's app with uvicorn (logging is configured by the caller, once)."""
    settle_garbage_collector()
    uvicorn.run(
        app,
        host=settings.host,
        port=port,
        log_config=None,
        access_log=False,  # RequestContextMiddleware logs one line per request
        timeout_keep_alive=settings.keep_alive_timeout,
        http=GuardedHttpToolsProtocol.configured(
            settings.header_timeout,
            settings.max_connections,
            app.state.admission_gate,
            overloaded_response(settings.process_name, error_response),
        ),
        timeout_graceful_shutdown=10,
    )

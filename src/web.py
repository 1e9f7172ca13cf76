"""What every HTTP process shares: JSON errors, request context, /metrics, and serving."""

import json
import logging
from collections.abc import Callable

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute, iter_route_contexts
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from src.docs_pages import add_offline_docs
from src.observability import RequestContextMiddleware, configure_logging, request_id_var
from src.oip import BINARY_HEADER
from src.schemas import ErrorResponse
from src.settings import CommonSettings

logger = logging.getLogger(__name__)
# A 10,000-row request of strings would otherwise list 40,000 errors.
MAX_LISTED_ERRORS = 20

_ERROR_DESCRIPTIONS = {
    400: "the body is not UTF-8 (FastAPI cannot decode it)",
    404: "no such resource",
    422: "the request does not follow the schema; `detail` lists the problems",
    500: "an unexpected error; the log has the stack trace under `request_id`",
    503: "a service or the database this answer needs is unavailable",
}


def error_responses(*codes: int, descriptions: dict[int, str] | None = None) -> dict:
    """OpenAPI `responses=` for the error statuses a route can answer, all in ErrorResponse."""
    described = {**_ERROR_DESCRIPTIONS, **(descriptions or {})}
    return {code: {"model": ErrorResponse, "description": described[code]} for code in codes}


# What every route with a JSON body can answer besides its own statuses.
BODY_ERRORS = error_responses(400, 422)


def _describe(error: dict) -> dict:
    # Only loc/msg/type: the raw input may be huge or NaN, which JSON cannot carry.
    return {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(status_code=422, content=validation_error_body(request, exc))


def validation_error_body(request: Request, exc: RequestValidationError) -> dict:
    errors = exc.errors()
    listed = [_describe(error) for error in errors[:MAX_LISTED_ERRORS]]
    summary = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in listed[:3]
    )
    body = {"error": f"invalid request: {summary}", "detail": listed}
    if len(errors) > MAX_LISTED_ERRORS:
        body["more_errors"] = len(errors) - MAX_LISTED_ERRORS
    has_body = request.method in ("POST", "PUT", "PATCH")
    if has_body and "json" not in request.headers.get("content-type", ""):
        # curl -d sends a form content type, which FastAPI does not parse as JSON.
        body["hint"] = "send the body as JSON with the header 'Content-Type: application/json'"
    return body


BINARY_NOT_SUPPORTED = (
    "binary tensor data is not supported here: send the tensors as JSON "
    "(tritonclient: set_data_from_numpy(array, binary_data=False), and "
    "InferRequestedOutput(name, binary_data=False))"
)


class OipRoute(APIRoute):
    """A route of the Open Inference Protocol: a request that does not parse is a 400 there."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def oip_handler(request: Request) -> Response:
            if BINARY_HEADER in request.headers:
                return JSONResponse(status_code=400, content={"error": BINARY_NOT_SUPPORTED})
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return JSONResponse(status_code=400, content=validation_error_body(request, exc))

        return oip_handler


def _drop_oip_422s(app: FastAPI) -> Callable[[], dict]:
    """app.openapi without the 422 FastAPI adds to every route with parameters.

    An OipRoute never answers 422 (see above), and FastAPI has no switch for that.
    """
    build = app.openapi

    def openapi() -> dict:
        schema = build()
        # Included routers' routes are reached through FastAPI's route contexts.
        for route in iter_route_contexts(app.routes):
            if isinstance(route.original_route, OipRoute) and route.include_in_schema:
                operations = schema["paths"][route.path_format]
                for method in route.methods:
                    operations[method.lower()]["responses"].pop("422", None)
        schemas = schema.get("components", {}).get("schemas", {})
        if "#/components/schemas/HTTPValidationError" not in json.dumps(schema["paths"]):
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        return schema

    return openapi


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # 404s, 405s and raised HTTPExceptions in the same {"error": ...} shape as the rest.
    return JSONResponse(
        status_code=exc.status_code, content={"error": exc.detail}, headers=exc.headers
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        status_code=500,
        content={"error": "internal error", "request_id": request_id_var.get()},
    )


async def _metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(title: str, lifespan: Callable, description: str = "") -> FastAPI:
    """A FastAPI app with the suite's error handlers, request middleware, /metrics and docs."""
    app = FastAPI(
        title=title,
        description=description,
        lifespan=lifespan,
        responses=error_responses(500),
        docs_url=None,  # add_offline_docs serves /docs and /redoc without a CDN
        redoc_url=None,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(RequestContextMiddleware)
    app.add_api_route("/metrics", _metrics, methods=["GET"], include_in_schema=False)
    app.openapi = _drop_oip_422s(app)
    add_offline_docs(app)
    return app


def serve(app_path: str, settings: CommonSettings, port: int) -> None:
    """Run one process's app with uvicorn, logging through our own handlers."""
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        app_path,
        host=settings.host,
        port=port,
        log_config=None,
        access_log=False,  # RequestContextMiddleware logs one line per request
        timeout_keep_alive=settings.keep_alive_timeout,
        timeout_graceful_shutdown=10,
    )


UNKNOWN_MODEL = error_responses(404, descriptions={404: "no model of that name here"})
BAD_TENSOR = error_responses(
    400, descriptions={400: "not an inference request this model takes; `error` says why"}
)


def oip_router() -> APIRouter:
    """The /v2 router of a class service or the proxy: OipRoute's 400s for every bad request.

    strict_content_type=False: a client that sends no Content-Type (the protocol names none)
    still has its body read as JSON.
    """
    return APIRouter(
        prefix="/v2",
        route_class=OipRoute,
        strict_content_type=False,
        tags=["Open Inference Protocol v2"],
    )

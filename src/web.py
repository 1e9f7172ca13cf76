"""What every HTTP process shares: JSON errors, request context, /metrics, and serving."""

import logging
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from src.observability import RequestContextMiddleware, configure_logging, request_id_var
from src.settings import CommonSettings

logger = logging.getLogger(__name__)
# A 10,000-row request of strings would otherwise list 40,000 errors.
MAX_LISTED_ERRORS = 20


def _describe(error: dict) -> dict:
    # Only loc/msg/type: the raw input may be huge or NaN, which JSON cannot carry.
    return {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
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
    return JSONResponse(status_code=422, content=body)


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
    """A FastAPI app with the suite's error handlers, request middleware and /metrics."""
    app = FastAPI(title=title, description=description, lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(RequestContextMiddleware)
    app.add_api_route("/metrics", _metrics, methods=["GET"], include_in_schema=False)
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

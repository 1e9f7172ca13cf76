"""The Open Inference Protocol's routing: a bad request is a 400 there, never a 422."""

import json
from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute, iter_route_contexts

from src.admin import ADMIN_ERRORS, ADMIN_ONLY
from src.oip.schemas import InferenceRequest, ServerLive, ServerMetadata, example_request
from src.web import error_responses, validation_error_response


class OipRoute(APIRoute):
    """A route of the Open Inference Protocol: a request that does not parse is a 400 there."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def oip_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return validation_error_response(request, exc, 400)

        return oip_handler


def include_oip_router(app: FastAPI, router: APIRouter) -> None:
    """Serve the protocol's routes on `app`, and document them as they answer (no 422s)."""
    app.include_router(router)
    app.openapi = _drop_oip_422s(app)


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
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        # The infer routes read their body themselves (src/oip/inference.py) and refer to it.
        request_schema = InferenceRequest.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        schemas.update(request_schema.pop("$defs", {}))
        if app.state.row_spec is not None:
            request_schema["examples"] = [example_request(app.state.row_spec)]
        schemas["InferenceRequest"] = request_schema
        if "#/components/schemas/HTTPValidationError" not in json.dumps(schema["paths"]):
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
        return schema

    return openapi


UNKNOWN_MODEL = error_responses(404, descriptions={404: "no model of that name here"})
BAD_TENSOR = error_responses(
    400, descriptions={400: "not an inference request this model takes; `error` says why"}
)


def repository_router() -> APIRouter:
    """The model repository extension's router (/v2/repository): operator-only (src/admin.py)."""
    return APIRouter(
        prefix="/v2/repository",
        route_class=OipRoute,
        strict_content_type=False,
        dependencies=ADMIN_ONLY,
        responses=ADMIN_ERRORS,
        tags=["Model repository"],
    )


def oip_router(server_name: str) -> APIRouter:
    """The /v2 router of a class service or the proxy: OipRoute's 400s for every bad request.

    It answers the server's metadata and liveness, the same wherever it is served; the
    caller adds readiness and the model routes. strict_content_type=False: a client that
    sends no Content-Type (the protocol names none) still has its body read as JSON.
    """
    router = APIRouter(
        prefix="/v2",
        route_class=OipRoute,
        strict_content_type=False,
        tags=["Open Inference Protocol v2"],
    )

    @router.get("", response_model=ServerMetadata)
    async def server_metadata(request: Request) -> ServerMetadata:
        return ServerMetadata(name=server_name, version=request.app.version, extensions=[])

    @router.get("/health/live", response_model=ServerLive)
    async def live() -> ServerLive:
        return ServerLive(live=True)

    return router

"""What the three OpenAPI documents declare (the contract test checks that it is true)."""

import pytest

from src.api.app import create_app as create_api_app
from src.ml.predictor import Predictor
from src.ml.repository import ModelRepository
from src.proxy.app import create_app as create_proxy_app
from src.schemas import request_model
from src.services.app import create_app as create_service_app
from src.services.models import ServedModel
from src.settings import ApiSettings, ProxySettings, ServiceSettings
from tests.bad_inputs import IRIS_ROWS

# Built, not served: no lifespan runs, so no model is loaded and no database is reached.
# With ADMIN_TOKEN, so the operator's routes are documented too.
proxy_app = create_proxy_app(ProxySettings(admin_token="token"), IRIS_ROWS)
service_settings = ServiceSettings(admin_token="token")
_, setosa_path = ModelRepository(service_settings.model_repository).resolve("setosa")
service_app = create_service_app(
    service_settings, ServedModel("setosa", "1", Predictor(setosa_path)), IRIS_ROWS
)
api_app = create_api_app(ApiSettings())

APPS = {"proxy": proxy_app, "service": service_app, "api": api_app}


def operations(app):
    for path, methods in app.openapi()["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


@pytest.mark.parametrize("name", APPS)
def test_every_error_uses_the_one_error_schema_and_every_route_declares_500(name):
    for method, path, operation in operations(APPS[name]):
        responses = operation["responses"]
        assert "500" in responses, (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")) and "content" in response:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)


@pytest.mark.parametrize("name", APPS)
def test_json_bodies_declare_400_and_only_v2_routes_skip_422(name):
    for method, path, operation in operations(APPS[name]):
        responses = operation["responses"]
        if "requestBody" in operation:
            assert "400" in responses, (method, path)
        if path.startswith("/v2"):
            assert "422" not in responses, (method, path)
        elif "requestBody" in operation or operation.get("parameters"):
            assert "422" in responses, (method, path)
    assert "HTTPValidationError" not in APPS[name].openapi()["components"]["schemas"]


def test_the_v2_model_routes_declare_404():
    for name in ("proxy", "service"):
        for _, path, operation in operations(APPS[name]):
            if path.startswith("/v2/models/"):
                assert "404" in operation["responses"], (name, path)


@pytest.mark.parametrize("name", APPS)
def test_every_route_declares_what_admission_control_answers(name):
    # Any route may be refused as overloaded (503), too late (504) or too large (413).
    for method, path, operation in operations(APPS[name]):
        assert {"413", "503", "504"} <= set(operation["responses"]), (method, path)


def test_the_offset_is_bounded():
    (operation,) = [op for _, path, op in operations(api_app) if path == "/data/{scope}"]
    (offset,) = [p for p in operation["parameters"] if p["name"] == "offset"]
    assert offset["schema"]["maximum"] == 10_000


ROW_ROUTES = {"proxy": ["/predict", "/predict/label"], "service": ["/predict"], "api": ["/predict"]}


@pytest.mark.parametrize("name", APPS)
def test_routes_that_read_their_body_themselves_declare_the_schema(name):
    # The row routes read their body without a FastAPI body parameter (src/bodies.py).
    for path in ROW_ROUTES[name]:
        body = APPS[name].openapi()["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        document = APPS[name].openapi()
        reference = body["content"]["application/json"]["schema"]["$ref"]
        assert reference == "#/components/schemas/PredictRequest"
        iris_request = request_model(IRIS_ROWS).model_json_schema()
        assert document["components"]["schemas"]["PredictRequest"] == iris_request


@pytest.mark.parametrize("name", ["proxy", "service"])
def test_the_infer_routes_declare_the_inference_request(name):
    document = APPS[name].openapi()
    body = document["paths"]["/v2/models/{model_name}/infer"]["post"]["requestBody"]
    reference = body["content"]["application/json"]["schema"]["$ref"]
    schemas = document["components"]["schemas"]
    assert reference == "#/components/schemas/InferenceRequest"
    assert {"InferenceRequest", "RequestInput", "RequestOutput"} <= schemas.keys()


@pytest.mark.parametrize("name", ["proxy", "service"])
def test_the_repository_routes_declare_401(name):
    paths = [path for _, path, _ in operations(APPS[name]) if path.startswith("/v2/repository")]
    assert "/v2/repository/models/{model_name}/load" in paths
    for _, path, operation in operations(APPS[name]):
        if path.startswith("/v2/repository"):
            assert "401" in operation["responses"], (name, path)

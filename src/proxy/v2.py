"""The proxy's Open Inference Protocol v2 routes, as KServe's InferenceGraph serves an Ensemble.

Model ENSEMBLE_NAME (`iris` by default) is the ensemble: every class service scores the
rows (the same fan-out and aggregation as POST /predict/label) and the answer is, per
row, `label` (BYTES) and `proba` (FP32). Each class model is reachable here under its own
name (and its versions), routed to its service's v2 routes.
"""

import numpy as np
import orjson
from fastapi import Depends, HTTPException
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from src.oip.inference import (
    BINARY_CONTENT_TYPE,
    InferenceBody,
    inference_openapi,
    inference_response,
)
from src.oip.routing import BAD_TENSOR, UNKNOWN_MODEL, oip_router
from src.oip.schemas import (
    BINARY_HEADER,
    BYTES,
    CLASS_OUTPUT_METADATA,
    FP32,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerReady,
    TensorMetadata,
    input_metadata,
)
from src.proxy.answers import required_failed, services_failed
from src.proxy.backends import Backends
from src.proxy.bodies import class_probabilities
from src.proxy.degraded import count_if_degraded
from src.proxy.dependencies import BackendsDep, SettingsDep
from src.proxy.ensemble import best_labels
from src.web import RowSpecDep, error_responses

SERVER_NAME = "proxy"
ENSEMBLE_OUTPUTS = [
    TensorMetadata(name="label", datatype=BYTES, shape=[-1]),
    TensorMetadata(name="proba", datatype=FP32, shape=[-1]),
]
UNAVAILABLE = error_responses(
    503, descriptions={503: "the service(s) this model needs failed; `services` says why"}
)
router = oip_router(SERVER_NAME)


async def _known_model(model_name: str, backends: BackendsDep, settings: SettingsDep) -> None:
    # A dependency, so an unknown model is a 404 before its body is even validated.
    if model_name != settings.ensemble_name and model_name not in backends.services:
        models = [settings.ensemble_name, *backends.services]
        raise HTTPException(
            status_code=404, detail=f"unknown model {model_name!r}; models here: {models}"
        )


KNOWN_MODEL = [Depends(_known_model)]


async def _routed(
    backends: Backends,
    model_name: str,
    method: str,
    suffix: str,
    expect: type[BaseModel],
    content: bytes | None = None,
    header_length: str | None = None,
) -> Response:
    """A class model's own answer from its service, as KServe's Ensemble node routes it.

    The request goes on as it came (binary or JSON); the answer (its JSON part) is checked
    against `expect`, then passed on as the bytes the service sent.
    """
    path = f"/v2/models/{model_name}{suffix}"
    headers = {} if header_length is None else {BINARY_HEADER: header_length}
    result = await backends.call_one(
        model_name, method, path, content, expect=expect.model_validate, headers=headers
    )
    if result.error == "not_found":  # e.g. a version the service does not serve: its words
        return Response(result.raw, status_code=404, media_type="application/json")
    if not result.ok:
        return services_failed(f"service {model_name} failed", {model_name: result})
    if result.header_length is None:
        return Response(result.raw, media_type="application/json")
    return Response(
        result.raw, media_type=BINARY_CONTENT_TYPE, headers={BINARY_HEADER: result.header_length}
    )


async def _ensemble_readiness(backends: Backends) -> JSONResponse | None:
    """None when the ensemble can answer (any class service ready), else the 503."""
    results = await backends.call_all("GET", "/v2/health/ready", expect=ServerReady.model_validate)
    if any(result.ok and result.body.ready for result in results.values()):
        return None
    return services_failed("no class service is ready", results, unusable="answered: not ready")


@router.get(
    "/health/ready",
    response_model=ServerReady,
    responses=error_responses(503, descriptions={503: "no class service is ready"}),
)
async def ready(backends: BackendsDep):
    return await _ensemble_readiness(backends) or ServerReady(ready=True)


@router.get(
    "/models/{model_name}",
    response_model=ModelMetadata,
    responses={**UNKNOWN_MODEL, **UNAVAILABLE},
    dependencies=KNOWN_MODEL,
)
async def model_metadata(
    model_name: str, backends: BackendsDep, settings: SettingsDep, row_spec: RowSpecDep
):
    if model_name == settings.ensemble_name:
        return ModelMetadata(
            name=model_name,
            platform="ensemble",
            inputs=[input_metadata(row_spec)],
            outputs=ENSEMBLE_OUTPUTS,
            # The values `label` can take: one class per service.
            parameters={"labels": list(backends.services)},
        )
    return await _routed(backends, model_name, "GET", "", ModelMetadata)


@router.get(
    "/models/{model_name}/ready",
    response_model=ModelReady,
    responses={**UNKNOWN_MODEL, **UNAVAILABLE},
    dependencies=KNOWN_MODEL,
)
async def model_ready(model_name: str, backends: BackendsDep, settings: SettingsDep):
    if model_name == settings.ensemble_name:
        return await _ensemble_readiness(backends) or ModelReady(name=model_name, ready=True)
    return await _routed(backends, model_name, "GET", "/ready", ModelReady)


@router.post(
    "/models/{model_name}/infer",
    response_model=InferenceResponse,
    response_model_exclude_none=True,
    responses={**BAD_TENSOR, **UNKNOWN_MODEL, **UNAVAILABLE},
    dependencies=KNOWN_MODEL,
    openapi_extra=inference_openapi(),
)
async def infer(model_name: str, body: InferenceBody, backends: BackendsDep, settings: SettingsDep):
    # The body was checked by InferenceBody, so a bad request never reaches a service.
    ensemble = model_name == settings.ensemble_name
    outputs = ENSEMBLE_OUTPUTS if ensemble else [CLASS_OUTPUT_METADATA]
    wanted = body.wanted_outputs([output.name for output in outputs])
    if not ensemble:
        return await _routed(
            backends, model_name, "POST", "/infer", InferenceResponse, body.raw, body.header_length
        )
    rows = body.rows
    content = orjson.dumps({"data": rows}, option=orjson.OPT_SERIALIZE_NUMPY)
    results = await backends.call_all("POST", "/predict", content, expect=class_probabilities)
    labels = best_labels(results, len(rows))
    if labels is None:
        return services_failed("every service failed", results)
    # HARD_DEPENDENCIES hold for the ensemble as for /predict/label.
    if failed := required_failed(backends, results, set(results) - set(labels.unavailable)):
        return failed
    count_if_degraded("ensemble", labels.unavailable)
    tensors = {"label": labels.labels, "proba": np.asarray(labels.probas, dtype=np.float32)}
    return inference_response(
        body,
        model_name,
        {name: tensors[name] for name in wanted},
        # The protocol's place for what is not a tensor: the services that did not answer.
        parameters={"unavailable": labels.unavailable, "model_versions": labels.model_versions},
    )


async def _class_model_version(model_name: str, settings: SettingsDep) -> None:
    if model_name == settings.ensemble_name:
        raise HTTPException(
            status_code=404,
            detail=f"the ensemble {model_name!r} has no versions; each class model has its own",
        )


KNOWN_CLASS_MODEL = [*KNOWN_MODEL, Depends(_class_model_version)]


@router.get(
    "/models/{model_name}/versions/{model_version}",
    response_model=ModelMetadata,
    responses={**UNKNOWN_MODEL, **UNAVAILABLE},
    dependencies=KNOWN_CLASS_MODEL,
)
async def model_version_metadata(model_name: str, model_version: str, backends: BackendsDep):
    return await _routed(backends, model_name, "GET", f"/versions/{model_version}", ModelMetadata)


@router.get(
    "/models/{model_name}/versions/{model_version}/ready",
    response_model=ModelReady,
    responses={**UNKNOWN_MODEL, **UNAVAILABLE},
    dependencies=KNOWN_CLASS_MODEL,
)
async def model_version_ready(model_name: str, model_version: str, backends: BackendsDep):
    suffix = f"/versions/{model_version}/ready"
    return await _routed(backends, model_name, "GET", suffix, ModelReady)


@router.post(
    "/models/{model_name}/versions/{model_version}/infer",
    response_model=InferenceResponse,
    response_model_exclude_none=True,
    responses={**BAD_TENSOR, **UNKNOWN_MODEL, **UNAVAILABLE},
    dependencies=KNOWN_CLASS_MODEL,
    openapi_extra=inference_openapi(),
)
async def model_version_infer(
    model_name: str, model_version: str, body: InferenceBody, backends: BackendsDep
):
    body.wanted_outputs([CLASS_OUTPUT_METADATA.name])
    suffix = f"/versions/{model_version}/infer"
    return await _routed(
        backends, model_name, "POST", suffix, InferenceResponse, body.raw, body.header_length
    )

"""The model repository routes through the proxy: one call reaches every replica of a service.

`POST /v2/repository/models/<class>/load` (or `/unload`) is sent to each replica the
service's name resolves to, with the caller's bearer token, so a rollout is one call
however many replicas there are. The index lists every service's. Operator-only, as on
the services: served only with ADMIN_TOKEN set, and only with its token.
"""

import asyncio
import logging

import aiohttp
import orjson
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

from src.oip.routing import UNKNOWN_MODEL, repository_router
from src.proxy.backends import Backends
from src.proxy.dependencies import BackendsDep
from src.web import error_responses

logger = logging.getLogger(__name__)

# Loading reads and checks a model file; far longer than an inference call may take.
REPOSITORY_CALL_SECONDS = 60
router = repository_router()
REPLICA_FAILED = error_responses(
    400,
    502,
    descriptions={
        400: "a replica did not load the version (its words in `replicas`); it serves the old one",
        502: "a replica could not be reached; `replicas` says which",
    },
)


async def _each_replica(
    backends: Backends, service: str, path: str, request: Request
) -> dict[str, tuple[int, object]]:
    """(status, answer) of every replica of `service` for a POST of `path`."""
    replicas = backends.replicas[service]
    await replicas.refresh()
    headers = {"Authorization": request.headers.get("authorization", "")}
    timeout = aiohttp.ClientTimeout(total=REPOSITORY_CALL_SECONDS)

    async def call(replica) -> tuple[int, object]:
        try:
            async with backends.session.post(
                replica.url(path), data=b"{}", headers=headers, timeout=timeout
            ) as response:
                raw = await response.read()
            return response.status, orjson.loads(raw) if raw else {}
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as error:
            return 502, {"error": f"{type(error).__name__}: {error}"}

    answers = await asyncio.gather(*(call(replica) for replica in replicas.replicas))
    return {
        replica.address: answer for replica, answer in zip(replicas.replicas, answers, strict=True)
    }


def _known(model_name: str, backends: Backends) -> None:
    if model_name not in backends.services:
        raise HTTPException(
            status_code=404,
            detail=f"unknown model {model_name!r}; class models here: {list(backends.services)}",
        )


async def _forwarded(model_name: str, action: str, backends: Backends, request: Request):
    _known(model_name, backends)
    path = f"/v2/repository/models/{model_name}/{action}"
    answers = await _each_replica(backends, model_name, path, request)
    statuses = {status for status, _ in answers.values()}
    body = {
        "name": model_name,
        "replicas": {address: body for address, (_, body) in answers.items()},
    }
    if statuses == {200}:
        logger.info("%s of %s done on %d replica(s)", action, model_name, len(answers))
        return body
    status = 400 if statuses <= {200, 400} else 502
    failed = sorted(address for address, (code, _) in answers.items() if code != 200)
    return JSONResponse(
        status_code=status,
        content={"error": f"{action} of {model_name} failed on {', '.join(failed)}", **body},
    )


@router.post("/models/{model_name}/load", responses={**UNKNOWN_MODEL, **REPLICA_FAILED})
async def load(model_name: str, backends: BackendsDep, request: Request):
    return await _forwarded(model_name, "load", backends, request)


@router.post("/models/{model_name}/unload", responses={**UNKNOWN_MODEL, **REPLICA_FAILED})
async def unload(model_name: str, backends: BackendsDep, request: Request):
    return await _forwarded(model_name, "unload", backends, request)


@router.post("/index", responses=REPLICA_FAILED)
async def index(backends: BackendsDep, request: Request):
    """Every replica's index, one entry per model, version and replica."""
    entries = []
    for service in backends.services:
        answers = await _each_replica(backends, service, "/v2/repository/index", request)
        for address, (status, body) in answers.items():
            if status != 200 or not isinstance(body, list):
                return JSONResponse(
                    status_code=502,
                    content={"error": f"index of {service} failed on {address}", "answer": body},
                )
            entries.extend({**entry, "replica": address} for entry in body)
    return entries

"""The batch API: registers items to score and serves their predictions once the job ran.

Start with `python -m src.api` (PORT and the database from the environment). No inference
happens here: POST /predict stores the rows and answers at once; the job
(`python -m src.task`) scores them later.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from sqlalchemy import Engine, Row
from sqlalchemy.exc import SQLAlchemyError

from src import web
from src.bodies import ValidRowsBody, json_response, rows_body_openapi
from src.db import queries, submissions
from src.db.engine import create_db_engine, ping
from src.db.packing import unpack_row
from src.ml.predictor import Predictor, load_labels, load_sample
from src.observability import request_id_var
from src.schemas import (
    HealthResponse,
    ItemPage,
    ItemPrediction,
    ItemRecord,
    RegisteredItems,
    RowSpec,
    SubmissionStatus,
)
from src.settings import ApiSettings
from src.web import BODY_ERRORS, RowSpecDep, error_response, error_responses, get_settings

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# The API waits this long for the database at start-up, then exits (and is restarted).
STARTUP_DATABASE_WAIT_SECONDS = 60

ITEMS_REGISTERED = Counter("api_items_registered_total", "Items stored by POST /predict")
IDEMPOTENT_REPLAYS = Counter(
    "api_idempotent_replays_total", "POST /predict answered from an Idempotency-Key's first answer"
)
BACKLOG_REFUSALS = Counter("api_backlog_refusals_total", "POST /predict refused: MAX_BACKLOG")
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class BatchModel:
    """What the API knows of the model the job scores with: its rows, classes and version."""

    row_spec: RowSpec
    labels: list[str]
    version: int
    path: Path

    @property
    def n_classes(self) -> int:
        return len(self.labels)


def load_batch_model(settings: ApiSettings) -> BatchModel:
    """The model's width F and class count K, checked against LABEL_FILEPATH.

    The model (MODEL_NAME's newest or pinned version, or MODEL_FILEPATH) is loaded once,
    to read F and K from the file the way the job will; the API itself never scores, so
    the session is dropped. ModelLoadError when it is absent or they differ.
    """
    labels = load_labels(settings.label_filepath)
    version, path = settings.resolved_model()
    predictor = Predictor(path).load()
    predictor.require_classes(len(labels), f"label file {settings.label_filepath}")
    sample = load_sample(settings.label_filepath, predictor.n_features)
    return BatchModel(RowSpec.of_width(predictor.n_features, sample), labels, version, path)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The schema was checked by `python -m src.api` before it served this app.
    engine = create_db_engine(app.state.settings.resolved_database_url())
    app.state.engine = engine
    logger.info("batch API using %s", engine.url.render_as_string(hide_password=True))
    yield
    engine.dispose()


def create_app(settings: ApiSettings, model: BatchModel | None = None) -> FastAPI:
    """The batch API's app for `model` (loaded from the settings when not given).

    Raises ModelLoadError when the model or label file is unusable or they disagree.
    """
    model = model or load_batch_model(settings)
    app = web.create_app(
        "batch API",
        settings,
        lifespan,
        description=(
            f"Registers {model.row_spec.description} for the batch job to score into "
            f"{model.n_classes} classes; serves the predictions by id."
        ),
        row_spec=model.row_spec,
    )
    app.state.labels = model.labels
    app.state.model = model
    app.add_exception_handler(SQLAlchemyError, _database_unavailable)
    app.include_router(router)
    return app


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def get_labels(request: Request) -> list[str]:
    return request.app.state.labels


async def get_model(request: Request) -> BatchModel:
    return request.app.state.model


EngineDep = Annotated[Engine, Depends(get_engine)]
LabelsDep = Annotated[list[str], Depends(get_labels)]
ModelDep = Annotated[BatchModel, Depends(get_model)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="items per page")]
# Ids are BIGINT: a larger number is a 422, not a database error.
MAX_ITEM_ID = 2**63 - 1
ItemId = Annotated[int, PathParam(ge=1, le=MAX_ITEM_ID)]
AfterId = Annotated[
    int | None, Query(ge=0, le=MAX_ITEM_ID, description="only items with a larger id")
]
# Skipping rows costs as many rows read: deep pages are for after_id, which stays O(page).
MAX_OFFSET = 10_000
Offset = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_OFFSET,
        description=f"items to skip (after after_id), at most {MAX_OFFSET}; use after_id beyond",
    ),
]

router = APIRouter()
# The IETF draft leaves the key's form to the server: one to 255 visible ASCII characters
# (a UUID is the usual choice), so it is stored and compared as it came.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="a retry with the same key and body answers the same ids, storing nothing",
    ),
]
SubmissionId = Annotated[int, PathParam(ge=1, le=MAX_ITEM_ID)]
DATABASE_DOWN = error_responses(503, descriptions={503: "the database is unavailable"})
REGISTER_ERRORS = {
    **BODY_ERRORS,
    **error_responses(
        422,
        503,
        descriptions={
            422: "the body or the Idempotency-Key header does not follow the schema, or the "
            "key was used with a different body",
            503: "the database is unavailable, or the backlog is past MAX_BACKLOG "
            "(then with Retry-After)",
        },
    ),
}
REGISTER_ERRORS[503]["headers"] = {
    "Retry-After": {
        "description": "seconds to wait before retrying (only when the backlog is full)",
        "schema": {"type": "integer"},
    }
}
REGISTER_HEADERS = {
    REPLAYED_HEADER: {
        "description": "`true` when the answer is the stored one of an earlier request "
        "with this Idempotency-Key (nothing stored this time)",
        "schema": {"type": "string", "enum": ["true"]},
    }
}


async def _database_unavailable(request: Request, exc: SQLAlchemyError) -> JSONResponse:
    # The database is down or refused the statement: say so, never a stack trace.
    logger.warning("database error on %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "database unavailable", request_id=request_id_var.get())


def _probabilities(row: Row, labels: list[str]) -> dict[str, float] | None:
    if row.scored_item_id is None:
        return None
    # strict: a prediction of another class count fails loudly, never pairs wrong names.
    return dict(zip(labels, unpack_row(row.probabilities), strict=True))


def _best_label(probabilities: dict[str, float]) -> str:
    return max(probabilities, key=probabilities.__getitem__)


def _model_version(row: Row) -> str | None:
    # A string, as the Open Inference Protocol gives versions; null while unscored.
    return None if row.scored_item_id is None else str(row.model_version)


def _record(row: Row, labels: list[str]) -> ItemRecord:
    probabilities = _probabilities(row, labels)
    return ItemRecord(
        id=row.id,
        data=unpack_row(row.data),
        created_at=row.created_at.isoformat(),
        prediction=probabilities,
        label=_best_label(probabilities) if probabilities else None,
        model_version=_model_version(row),
    )


def _page(rows: list[Row], labels: list[str], limit: int) -> ItemPage:
    # A full page may have a successor; a short one is the last.
    next_after_id = rows[-1].id if len(rows) == limit else None
    return ItemPage(items=[_record(row, labels) for row in rows], next=next_after_id)


@router.get("/health", response_model=HealthResponse, responses=DATABASE_DOWN)
def health(engine: EngineDep) -> HealthResponse | JSONResponse:
    try:
        ping(engine)
    except SQLAlchemyError as error:
        logger.warning("health check: database unreachable: %s", error)
        return error_response(503, "database unreachable", health="unavailable")
    return HealthResponse()


@router.get("/metadata")
def metadata(
    settings: SettingsDep,
    labels: LabelsDep,
    row_spec: RowSpecDep,
    engine: EngineDep,
    model: ModelDep,
) -> dict:
    return {
        "model_filepath": str(model.path),
        "model_name": settings.model_name,
        # The version the job scores with when it runs with the API's settings.
        "model_version": str(model.version),
        "data_type": "float32",
        "data_structure": row_spec.structure,
        "data_sample": [row_spec.sample],
        "prediction_type": "float32",
        "prediction_structure": f"(N, {len(labels)}): one probability per label",
        "labels": labels,
        "max_rows": settings.max_rows,
        "database": engine.dialect.name,
        "page_size": {"default": DEFAULT_PAGE_SIZE, "max": MAX_PAGE_SIZE},
    }


def _refuse_past_max_backlog(engine: Engine, settings: ApiSettings) -> None:
    if settings.max_backlog is None or not submissions.backlog_exceeds(
        engine, settings.max_backlog
    ):
        return
    BACKLOG_REFUSALS.inc()
    raise HTTPException(
        status_code=503,
        detail=f"backlog full: more than {settings.max_backlog} items wait to be scored "
        f"(MAX_BACKLOG); retry in {settings.backlog_retry_after_seconds}s",
        headers={"Retry-After": str(settings.backlog_retry_after_seconds)},
    )


@router.post(
    "/predict",
    response_model=RegisteredItems,
    responses={**REGISTER_ERRORS, 200: {"headers": REGISTER_HEADERS}},
    openapi_extra=rows_body_openapi(),
)
def register(
    body: ValidRowsBody,
    engine: EngineDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    # A plain `def`: FastAPI runs it in a worker thread, so the blocking insert
    # does not hold up the event loop.
    rows = body.rows
    if idempotency_key is None:
        _refuse_past_max_backlog(engine, settings)
        registered = submissions.register(engine, rows)
    else:
        try:
            registered = submissions.register_once(
                engine,
                rows,
                idempotency_key,
                settings.idempotency_ttl_seconds,
                before_storing=lambda: _refuse_past_max_backlog(engine, settings),
            )
        except submissions.KeyReusedError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
    # The RegisteredItems shape, written without validating one int per row again.
    response = json_response(
        {
            "id": registered.item_ids[0],
            "ids": registered.item_ids,
            "submission_id": registered.submission_id,
        }
    )
    if registered.replayed:
        IDEMPOTENT_REPLAYS.inc()
        response.headers[REPLAYED_HEADER] = "true"
    else:
        ITEMS_REGISTERED.inc(len(registered.item_ids))
    return response


@router.get(
    "/submissions/{submission_id}",
    response_model=SubmissionStatus,
    responses={**error_responses(404, 422), **DATABASE_DOWN},
)
def submission(
    submission_id: SubmissionId,
    engine: EngineDep,
    labels: LabelsDep,
    limit: PageSize = DEFAULT_PAGE_SIZE,
    after_id: AfterId = None,
) -> SubmissionStatus:
    """A POST's counts and times, and one page of its items (`after_id` for the next)."""
    status = submissions.get_status(engine, submission_id)
    if status is None:
        raise HTTPException(status_code=404, detail=f"no submission with id {submission_id}")
    page = _page(submissions.list_submission_items(engine, status, limit, after_id), labels, limit)
    completed_at = status.completed_at
    return SubmissionStatus(
        id=status.id,
        total=status.total,
        scored=status.scored,
        pending=status.pending,
        created_at=status.created_at.isoformat(),
        completed_at=completed_at.isoformat() if completed_at else None,
        items=page.items,
        next=page.next,
    )


@router.get(
    "/predict/id/{item_id}",
    response_model=ItemPrediction,
    response_model_exclude_unset=True,
    responses={**error_responses(404, 422), **DATABASE_DOWN},
)
def prediction_by_id(item_id: ItemId, engine: EngineDep, labels: LabelsDep) -> ItemPrediction:
    row = queries.get_item(engine, item_id)
    if row is None:
        raise HTTPException(status_code=404, detail=f"no item with id {item_id}")
    probabilities = _probabilities(row, labels)
    if probabilities is None:
        return ItemPrediction(id=row.id, prediction=None, model_version=None)
    return ItemPrediction(
        id=row.id,
        prediction=probabilities,
        label=_best_label(probabilities),
        model_version=_model_version(row),
    )


@router.get(
    "/data/{scope}", response_model=ItemPage, responses={**error_responses(422), **DATABASE_DOWN}
)
def list_items(
    scope: queries.Scope,
    engine: EngineDep,
    labels: LabelsDep,
    limit: PageSize = DEFAULT_PAGE_SIZE,
    after_id: AfterId = None,
    offset: Offset = 0,
) -> ItemPage:
    """One page of all, scored (`predicted`) or unscored (`unpredicted`) items, in id order."""
    return _page(queries.list_items(engine, scope, limit, after_id, offset), labels, limit)

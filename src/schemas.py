"""Request and response schemas, and the one place where input rows are validated.

Every process (proxy, class services, batch API) takes `{"data": [[f, f, f, f], ...]}`
and applies the same rule: 1..MAX_ROWS rows of exactly 4 finite numbers. The proxy, which
only forwards the rows, checks a valid body without building Python objects per number
(`RowsBody`); a body that fails that check gets the schema's own answer.
"""

import email.message
import json
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

N_FEATURES = 4
SAMPLE_ROW = [5.1, 3.5, 1.4, 0.2]

# Strict: "5.1" and true are rejected instead of being coerced (ints are fine); NaN and ±Infinity
# (which Python's JSON parser accepts) are rejected by allow_inf_nan=False.
FiniteNumber = Annotated[float, Strict(), Field(allow_inf_nan=False)]
FeatureRow = Annotated[list[FiniteNumber], Field(min_length=N_FEATURES, max_length=N_FEATURES)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"data": [SAMPLE_ROW]}]}
    )

    data: list[FeatureRow] = Field(min_length=1, description="rows of 4 iris measurements")

    def as_array(self) -> np.ndarray:
        return np.asarray(self.data, dtype=np.float32)


async def validated_request(body: PredictRequest, request: Request) -> PredictRequest:
    """The request once the row limit is checked too.

    MAX_ROWS comes from the process's settings, which the schema cannot see, so the
    limit is checked here and reported in the same 422 shape as the schema's errors.
    """
    problem = row_limit_error(len(body.data), request.app.state.settings.max_rows)
    if problem:
        raise RequestValidationError(
            [{"type": "too_long", "loc": ("body", "data"), "msg": problem}]
        )
    return body


def row_limit_error(rows: int, max_rows: int) -> str | None:
    """The MAX_ROWS rule, shared by the seed routes and the Open Inference Protocol's."""
    if rows > max_rows:
        return f"at most {max_rows} rows per request, got {rows}"
    return None


ValidRequest = Annotated[PredictRequest, Depends(validated_request)]


def valid_row_count(raw: bytes, max_rows: int) -> int | None:
    """The number of rows when `raw` is a valid request body by the rule above, else None.

    The same rule as PredictRequest + MAX_ROWS, checked by orjson and numpy rather than
    one Python object per number: several times cheaper on 10,000 rows. None means "let
    the schema decide and say why" (`rows_body`); tests/test_schemas.py checks that this
    never accepts a body the schema rejects.
    """
    try:
        body = orjson.loads(raw)  # rejects NaN, Infinity and numbers beyond float64
    except orjson.JSONDecodeError:
        return None
    if type(body) is not dict or len(body) != 1 or type(body.get("data")) is not list:
        return None
    if not 1 <= len(body["data"]) <= max_rows:
        return None
    # The only string may be the key: numpy would turn "5.1" into 5.1. With no other
    # string in the text, true, false and null can only be literals, which numpy would
    # turn into 1.0, 0.0 and NaN (NaN is also caught below).
    if raw.count(b'"') != 2 or b"true" in raw or b"false" in raw or b"null" in raw:
        return None
    try:
        rows = np.array(body["data"], dtype=np.float64)
    except (ValueError, TypeError):  # ragged rows, or a row that is not a list
        return None
    if rows.shape != (len(body["data"]), N_FEATURES) or not np.isfinite(rows).all():
        return None
    return len(rows)


@dataclass(frozen=True)
class RowsBody:
    """A valid request body as sent (`raw`, forwarded unchanged) and its number of rows."""

    raw: bytes
    rows: int


async def rows_body(request: Request) -> RowsBody:
    """The body, validated: the fast check, else FastAPI's parse and the schema's errors."""
    raw = await request.body()
    max_rows = request.app.state.settings.max_rows
    is_json = _is_json(request.headers.get("content-type"))
    if is_json and (rows := valid_row_count(raw, max_rows)) is not None:
        return RowsBody(raw, rows)
    body = _parsed_like_fastapi(raw, is_json)
    try:
        request_body = PredictRequest.model_validate(body, from_attributes=True)
    except ValidationError as error:
        raise RequestValidationError(
            [{**problem, "loc": ("body", *problem["loc"])} for problem in error.errors()]
        ) from None
    # Valid, though the fast check declined it (a repeated key, an integer beyond 64 bits):
    # still forwarded as sent, since the services parse it as FastAPI did here.
    return RowsBody(raw, len((await validated_request(request_body, request)).data))


def _is_json(content_type: str | None) -> bool:
    # FastAPI's test for a JSON body (application/json or application/*+json); the plain
    # type, which nearly every request has, is answered without parsing the header.
    if content_type == "application/json":
        return True
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _parsed_like_fastapi(raw: bytes, is_json: bool) -> Any:
    """What FastAPI hands the schema for this body, with its errors for a body it cannot parse.

    Kept identical so that the proxy answers a bad body exactly as the class services do
    (tests/proxy/test_proxy_http.py compares the two).
    """
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    if not is_json:
        return raw  # the schema then says it wants an object
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", error.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": error.msg},
                }
            ]
        ) from None
    except ValueError:  # not UTF-8, 16 or 32
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from None


ValidRowsBody = Annotated[RowsBody, Depends(rows_body)]


def rows_body_openapi() -> dict:
    """`openapi_extra` of a route that takes ValidRowsBody: its body is a PredictRequest."""
    schema = PredictRequest.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ServiceFailure(BaseModel):
    error: str = Field(description="timeout, unreachable, bad_status or bad_response")
    detail: str


class ErrorResponse(BaseModel):
    """Every error of every process: `error` names the problem; the rest depends on the case.

    It is also the Open Inference Protocol's error shape (`{"error": "..."}`).
    """

    error: str
    detail: list[ErrorDetail] | None = Field(None, description="422/400: up to 20 problems")
    more_errors: int | None = Field(None, description="problems beyond the listed ones")
    hint: str | None = None
    request_id: str | None = Field(None, description="500 and database errors: the request's id")
    services: dict[str, ServiceFailure] | None = Field(
        None, description="proxy 503: why each service failed"
    )


class HealthResponse(BaseModel):
    health: str = "ok"


class BinaryPrediction(BaseModel):
    """A class service's answer: `[P(class), P(not class)]` for the first row and for all."""

    prediction: list[float]
    predictions: list[list[float]]


def class_probabilities(body: Any) -> np.ndarray:
    """P(class) per row of a class service's answer; ValueError unless a BinaryPrediction.

    Checked with numpy rather than the schema: the proxy reads up to three of these per
    request, of up to MAX_ROWS rows each. Stricter than the schema where it matters here:
    every probability must be a finite number.
    """
    if type(body) is not dict or not {"prediction", "predictions"} <= body.keys():
        raise ValueError("not a BinaryPrediction: expected the keys prediction and predictions")
    try:
        first = np.array(body["prediction"], dtype=np.float64)
        every = np.array(body["predictions"], dtype=np.float64)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not a BinaryPrediction: {error}") from None
    if first.shape != (2,) or every.ndim != 2 or every.shape[1:] != (2,):
        raise ValueError(
            f"not a BinaryPrediction: prediction of shape {first.shape}, predictions of "
            f"shape {every.shape}; expected (2,) and (rows, 2)"
        )
    if not (np.isfinite(first).all() and np.isfinite(every).all()):
        raise ValueError("not a BinaryPrediction: a probability is not a finite number")
    return every[:, 0]


class LabelledProbability(BaseModel):
    proba: float
    label: str


class LabelPrediction(BaseModel):
    prediction: LabelledProbability
    predictions: list[LabelledProbability]
    unavailable: list[str] = Field(default_factory=list, description="services that failed")


class RegisteredItems(BaseModel):
    """The batch API's answer to POST /predict: the items are stored, not yet scored."""

    id: int = Field(description="the first item's id")
    ids: list[int] = Field(description="one id per row, in request order")
    submission_id: int = Field(description="follow it at GET /submissions/{submission_id}")


class ItemPrediction(BaseModel):
    """An item's prediction; `prediction` is null until the batch job has scored it."""

    id: int
    prediction: dict[str, float] | None
    label: str | None = None


class ItemRecord(BaseModel):
    id: int
    data: list[float]
    created_at: str
    prediction: dict[str, float] | None = None
    label: str | None = None


class ItemPage(BaseModel):
    items: list[ItemRecord]
    next: int | None = Field(description="pass as after_id for the next page; null on the last")


class SubmissionStatus(BaseModel):
    """One POST /predict's progress, and a page of its items in id order."""

    id: int
    total: int = Field(description="items the POST stored")
    scored: int = Field(description="items scored (including any deleted since by retention)")
    pending: int = Field(description="items not scored yet")
    created_at: str
    completed_at: str | None = Field(description="when the last item was scored; null before")
    items: list[ItemRecord]
    next: int | None = Field(description="pass as after_id for the next page; null on the last")

"""The proxy's fast path: request bodies checked, and class services' answers read, with numpy.

The proxy only forwards rows, so a valid body is checked by orjson and numpy, without a
Python object per number, and sent on as it came; a body that fails the check gets the
schema's own answer (src/schemas.py), exactly as a class service would give it.
"""

import email.message
import json
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from src.schemas import N_FEATURES, PredictRequest
from src.settings import CommonSettings
from src.web import checked_row_limit, get_settings


def valid_row_count(raw: bytes, max_rows: int) -> int | None:
    """The number of rows when `raw` is a valid request body by the schema's rule, else None.

    The rule of PredictRequest + MAX_ROWS (src/schemas.py), checked by orjson and numpy
    rather than one Python object per number: several times cheaper on 10,000 rows. None
    means "let the schema decide and say why" (`rows_body`); tests/proxy/test_bodies.py
    checks that this never accepts a body the schema rejects.
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


async def rows_body(
    request: Request, settings: Annotated[CommonSettings, Depends(get_settings)]
) -> RowsBody:
    """The body, validated: the fast check, else FastAPI's parse and the schema's errors."""
    raw = await request.body()
    max_rows = settings.max_rows
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
    return RowsBody(raw, len(checked_row_limit(request_body, max_rows).data))


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

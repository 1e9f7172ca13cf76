"""Request bodies of rows checked, and answers written, without a Python object per number.

Every process that takes `{"data": [[f, ..., f], ...]}` (proxy, class services, batch
API) reads it here, at the width of the model it serves (`RowSpec`): a valid body is
checked by orjson and numpy; a body that fails the check gets the schema's own answer
(src/schemas.py), word for word, from the same fallback everywhere. Answers are written
by orjson straight from numpy arrays.
"""

import email.message
import itertools
import json
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from src.schemas import RowSpec, request_model
from src.settings import CommonSettings
from src.web import PREDICT_REQUEST, checked_row_limit


def finite_rows(
    values: Any, rows: int, n_features: int, *, strings_ruled_out: bool = False
) -> np.ndarray | None:
    """`values` (a list of `rows` rows, or flat) as a (rows, n_features) float64 array of
    finite numbers; None when it is anything else, or might hold a string or a boolean.

    Without a dtype numpy keeps strings as strings and big integers as objects, which the
    dtype test then declines; a boolean beside numbers would become 0 or 1, so callers
    rule booleans out first (`may_hold_booleans`). A caller that ruled strings out too
    gets the faster conversion straight to float64 (a null becomes NaN, declined below).
    """
    if strings_ruled_out and (array := _flattened(values, rows, n_features)) is not None:
        return array if np.isfinite(array).all() else None
    try:
        array = np.array(values, dtype=np.float64 if strings_ruled_out else None)
    except (ValueError, TypeError):  # ragged rows
        return None
    if array.dtype.kind not in "if" or array.size != rows * n_features:
        return None
    if array.shape not in ((rows, n_features), (rows * n_features,)):
        return None
    array = array.reshape(rows, n_features).astype(np.float64, copy=False)
    return array if np.isfinite(array).all() else None


def _flattened(values: Any, rows: int, n_features: int) -> np.ndarray | None:
    """`values` as rows of n_features floats, read as one flat run: about twice as fast as
    np.array on nested lists. None when they are not plainly such rows (numbers only:
    fromiter would read a string as a number, so only callers that ruled strings out)."""
    if type(values) is not list or len(values) != rows:
        return None
    try:
        if any(length != n_features for length in set(map(len, values))):
            return None
        flat = np.fromiter(
            itertools.chain.from_iterable(values), dtype=np.float64, count=rows * n_features
        )
    except (ValueError, TypeError):  # a row that is no list, an item that is no number
        return None
    return flat.reshape(rows, n_features)


def may_hold_booleans(raw: bytes) -> bool:
    # Cheap and conservative: a body that spells neither literal cannot hold one.
    return b"true" in raw or b"false" in raw


def valid_rows(raw: bytes, max_rows: int, n_features: int) -> np.ndarray | None:
    """The rows when `raw` is a valid request body by the schema's rule, else None.

    The rule of `request_model` + MAX_ROWS (src/schemas.py), checked by orjson and numpy
    rather than one Python object per number: several times cheaper on 10,000 rows. None
    means "let the schema decide and say why" (`rows_body`); tests/test_bodies.py checks
    that this never accepts a body the schema rejects.
    """
    try:
        body = orjson.loads(raw)  # rejects NaN, Infinity and numbers beyond float64
    except orjson.JSONDecodeError:
        return None
    if type(body) is not dict or len(body) != 1 or type(body.get("data")) is not list:
        return None
    rows = len(body["data"])
    # The only string may be the key (a repeated key is left to the schema to judge).
    if not 1 <= rows <= max_rows or raw.count(b'"') != 2 or may_hold_booleans(raw):
        return None
    # `rows` items holding rows * n_features numbers can only be rows of n_features.
    return finite_rows(body["data"], rows, n_features, strings_ruled_out=True)


@dataclass(frozen=True)
class RowsBody:
    """A valid request body as sent (`raw`, forwarded unchanged by the proxy) and its rows."""

    raw: bytes
    rows: np.ndarray


async def rows_body(request: Request) -> RowsBody:
    """The body, validated: the fast check, else FastAPI's parse and the schema's errors."""
    raw = await request.body()
    # The app's settings and width read here, not as sub-dependencies: FastAPI's resolution
    # of each dependency costs more per one-row request than reading the attribute.
    settings: CommonSettings = request.app.state.settings
    spec: RowSpec = request.app.state.row_spec
    max_rows = settings.max_rows
    json_body = is_json(request.headers.get("content-type"))
    if json_body and (rows := valid_rows(raw, max_rows, spec.n_features)) is not None:
        return RowsBody(raw, rows)
    body = parsed_like_fastapi(raw, json_body)
    try:
        request_body = request_model(spec).model_validate(body, from_attributes=True)
    except ValidationError as error:
        raise RequestValidationError(
            [{**problem, "loc": ("body", *problem["loc"])} for problem in error.errors()]
        ) from None
    # Valid, though the fast check declined it (a repeated key, an integer beyond 64 bits).
    checked_row_limit(request_body, max_rows)
    return RowsBody(raw, np.asarray(request_body.data, dtype=np.float64))


def is_json(content_type: str | None) -> bool:
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


def parsed_like_fastapi(raw: bytes, json_body: bool) -> Any:
    """What FastAPI hands the schema for this body, with its errors for a body it cannot parse.

    Kept identical so that every process answers a bad body exactly as FastAPI would
    (tests/proxy/test_proxy_http.py compares the proxy with a class service).
    """
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    if not json_body:
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
    """`openapi_extra` of a route that takes ValidRowsBody: its body is a PredictRequest, of
    the app's width (web.create_app puts that schema into the document)."""
    schema = {"$ref": f"#/components/schemas/{PREDICT_REQUEST}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def json_response(content: Any, status_code: int = 200) -> Response:
    """`content` written by orjson, numpy arrays included, without a response model.

    Arrays are written as float64 so every number reads back exactly as `tolist()` gives it.
    """
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type="application/json",
    )

"""Inference requests read, and answers written, in JSON or the binary tensor data extension.

A JSON request's tensor is checked by orjson and numpy (src/bodies.py) when it is plainly
valid; anything else goes through the schema (src/oip/schemas.py), which says what is
wrong. A binary request (the `Inference-Header-Content-Length` header: a JSON header, then
each input's raw little-endian bytes, as tritonclient sends by default) needs no number
parsing at all. Outputs are binary when the request asks (`binary_data` on an output, or
`binary_data_output`), JSON otherwise.
"""

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from src.bodies import finite_rows, is_json, may_hold_booleans, parsed_like_fastapi
from src.oip.schemas import (
    BINARY_HEADER,
    BYTES,
    FP32,
    INPUT_NAME,
    InferenceRequest,
    TensorError,
    checked_input,
    feature_rows,
    selected_outputs,
)
from src.schemas import RowSpec
from src.settings import CommonSettings

BINARY_SIZE = "binary_data_size"
BINARY_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Inference:
    """A valid inference request: its JSON part, its rows, and the body as it came."""

    request: InferenceRequest
    rows: np.ndarray
    raw: bytes
    # The binary extension's JSON header length, as sent; None for a JSON body.
    header_length: str | None = None

    def wanted_outputs(self, names: list[str]) -> list[str]:
        """The outputs among the model's `names` the request asks for (all if it names none);
        an unknown one is a 400."""
        try:
            return selected_outputs(self.request, names)
        except TensorError as error:
            raise HTTPException(status_code=400, detail=str(error)) from None

    def binary_output(self, name: str) -> bool:
        """Whether output `name` is to be answered as raw bytes."""
        for output in self.request.outputs or []:
            if output.name == name and output.parameters and "binary_data" in output.parameters:
                return output.parameters["binary_data"] is True
        return (self.request.parameters or {}).get("binary_data_output") is True


def read_inference(
    raw: bytes,
    header_length: str | None,
    content_type: str | None,
    max_rows: int,
    spec: RowSpec,
) -> Inference:
    """The request in `raw`; TensorError (a 400) or RequestValidationError when it is not valid."""
    if header_length is not None:
        return _binary(raw, header_length, max_rows, spec)
    # As FastAPI reads a body without Content-Type on these routes: as JSON.
    json_body = content_type is None or is_json(content_type)
    if json_body and (inference := _fast_json(raw, max_rows, spec.n_features)) is not None:
        return inference
    request = _validated(parsed_like_fastapi(raw, json_body))
    rows = np.asarray(feature_rows(request, max_rows, spec), dtype=np.float64)
    return Inference(request, rows, raw)


def _validated(body: Any) -> InferenceRequest:
    # Errors as FastAPI words them for a body parameter (OipRoute makes them a 400).
    try:
        return InferenceRequest.model_validate(body, from_attributes=True)
    except ValidationError as error:
        raise RequestValidationError(
            [{**problem, "loc": ("body", *problem["loc"])} for problem in error.errors()]
        ) from None


def _fast_json(raw: bytes, max_rows: int, n_features: int) -> Inference | None:
    """The request when its one input's values are plainly valid, else None (the schema decides).

    Everything but the values goes through the schema (with the values left out), so only
    the values, up to MAX_ROWS rows of them, skip one Python object per number.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    inputs = body.get("inputs") if type(body) is dict else None
    if type(inputs) is not list or len(inputs) != 1 or type(inputs[0]) is not dict:
        return None
    data = inputs[0].get("data")
    if type(data) is not list:
        return None
    try:
        request = InferenceRequest.model_validate({**body, "inputs": [{**inputs[0], "data": []}]})
    except ValidationError:
        return None
    tensor = checked_input(request, max_rows, n_features)  # the schema's own messages
    rows = finite_rows(data, tensor.shape[0], n_features)
    # Numbers only by now (strings and nulls were declined), so a boolean is a literal.
    if rows is None or (may_hold_booleans(raw) and may_hold_booleans(orjson.dumps(data))):
        return None
    return Inference(request, rows, raw)


def _binary(raw: bytes, header_length: str, max_rows: int, spec: RowSpec) -> Inference:
    """A request in the binary tensor data extension: JSON header, then the inputs' bytes."""
    if not header_length.isdigit() or not 0 < int(header_length) <= len(raw):
        raise TensorError(
            f"{BINARY_HEADER} must be the JSON header's length in bytes, at most the body's "
            f"{len(raw)}, got {header_length!r}"
        )
    length = int(header_length)
    try:
        header = orjson.loads(raw[:length])
    except orjson.JSONDecodeError as error:
        raise TensorError(
            f"the inference header (the first {length} bytes) is not JSON: {error}"
        ) from None
    inputs = header.get("inputs") if type(header) is dict else None
    buffers: dict[int, bytes] = {}
    offset = length
    for index, tensor in enumerate(inputs if type(inputs) is list else []):
        parameters = tensor.get("parameters") if type(tensor) is dict else None
        size = parameters.get(BINARY_SIZE) if type(parameters) is dict else None
        if size is None:
            continue
        if type(size) is not int or size < 0 or offset + size > len(raw):
            raise TensorError(
                f"input {index}: {BINARY_SIZE} must be a byte count within the body's "
                f"{len(raw) - length} bytes after the header, got {size!r}"
            )
        if "data" in tensor:
            raise TensorError(f"input {index}: has both data and {BINARY_SIZE}; send one")
        buffers[index] = raw[offset : offset + size]
        tensor["data"] = []
        offset += size
    if offset != len(raw):
        raise TensorError(
            f"the body has {len(raw) - length} bytes after the header; "
            f"the inputs' {BINARY_SIZE} add up to {offset - length}"
        )
    request = _validated(header)
    tensor = checked_input(request, max_rows, spec.n_features)
    if 0 not in buffers:  # the input came as JSON values inside the header
        rows = finite_rows(tensor.data, tensor.shape[0], spec.n_features)
        if rows is None or may_hold_booleans(orjson.dumps(tensor.data)):
            rows = np.asarray(feature_rows(request, max_rows, spec), dtype=np.float64)
        return Inference(request, rows, raw, header_length)
    rows = _fp32_rows(buffers[0], tensor.shape[0], spec.n_features)
    return Inference(request, rows, raw, header_length)


def _fp32_rows(buffer: bytes, rows: int, n_features: int) -> np.ndarray:
    expected = rows * n_features * np.dtype(np.float32).itemsize
    if len(buffer) != expected:
        raise TensorError(
            f"input {INPUT_NAME!r}: shape [{rows}, {n_features}] of {FP32} needs {expected} "
            f"bytes of binary data, got {len(buffer)}"
        )
    values = np.frombuffer(buffer, dtype="<f4").reshape(rows, n_features)
    if not np.isfinite(values).all():
        row, column = np.argwhere(~np.isfinite(values))[0]
        raise TensorError(
            f"input {INPUT_NAME!r}: row {row}, column {column}: Input should be a finite number"
        )
    return values


async def inference_body(request: Request) -> Inference:
    raw = await request.body()
    # Read here rather than as sub-dependencies, as rows_body does (src/bodies.py).
    settings: CommonSettings = request.app.state.settings
    spec: RowSpec = request.app.state.row_spec
    try:
        return read_inference(
            raw,
            request.headers.get(BINARY_HEADER),
            request.headers.get("content-type"),
            settings.max_rows,
            spec,
        )
    except TensorError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None


InferenceBody = Annotated[Inference, Depends(inference_body)]


def inference_openapi() -> dict:
    """`openapi_extra` of an infer route: its body is an InferenceRequest (or binary)."""
    schema = {"$ref": "#/components/schemas/InferenceRequest"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def inference_response(
    inference: Inference,
    model_name: str,
    tensors: dict[str, np.ndarray | list[str]],
    parameters: dict | None = None,
    model_version: str | None = None,
) -> Response:
    """The InferenceResponse for `tensors` (FP32 arrays or lists of labels, BYTES), each
    in JSON or binary as the request asked."""
    header: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        header["model_version"] = model_version
    if inference.request.id is not None:
        header["id"] = inference.request.id
    if parameters is not None:
        header["parameters"] = parameters
    outputs, buffers = [], []
    for name, values in tensors.items():
        labels = isinstance(values, list)
        output = {
            "name": name,
            "datatype": BYTES if labels else FP32,
            "shape": [len(values)] if labels else list(values.shape),
        }
        if inference.binary_output(name):
            buffer = _bytes_elements(values) if labels else values.astype("<f4").tobytes()
            output["parameters"] = {BINARY_SIZE: len(buffer)}
            buffers.append(buffer)
        else:
            # float64 of the float32 values: each number as tolist() writes it.
            output["data"] = values if labels else values.astype(np.float64).ravel()
        outputs.append(output)
    header["outputs"] = outputs
    body = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    if not buffers:
        return Response(body, media_type="application/json")
    return Response(
        body + b"".join(buffers),
        media_type=BINARY_CONTENT_TYPE,
        headers={BINARY_HEADER: str(len(body))},
    )


def _bytes_elements(values: list[str]) -> bytes:
    # BYTES in binary: each element as its 4-byte little-endian length, then its bytes.
    encoded = [value.encode() for value in values]
    return b"".join(len(value).to_bytes(4, "little") + value for value in encoded)

"""The Open Inference Protocol v2 (KServe's v2 REST protocol): its JSON shapes and tensor rule.

The suite's models take one FP32 tensor named `input` of shape [-1, F], F being the
model's width; its rows go through the same rule as `{"data": ...}` (src/schemas.py), so
both surfaces reject the same inputs. Requests are read, and answers written, in
src/oip/inference.py (JSON tensors and the binary tensor data extension).
"""

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictInt, ValidationError

from src.schemas import RowSpec, request_model, row_limit_error

INPUT_NAME = "input"
FP32 = "FP32"
BYTES = "BYTES"
# A request whose body is the binary extension's (JSON header + raw tensors) says so here.
BINARY_HEADER = "inference-header-content-length"


class TensorError(ValueError):
    """A tensor the model cannot take; the message names the problem (a 400)."""


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for a dimension of any size")


def input_metadata(spec: RowSpec) -> TensorMetadata:
    return TensorMetadata(name=INPUT_NAME, datatype=FP32, shape=[-1, spec.n_features])


def example_request(spec: RowSpec) -> dict:
    """An inference request of the spec's example row (the OpenAPI document's example)."""
    shape = [1, spec.n_features]
    return {
        "inputs": [
            {"name": INPUT_NAME, "shape": shape, "datatype": FP32, "data": list(spec.sample)}
        ]
    }


# A class service's model: [P(class), P(not class)] per row.
CLASS_OUTPUT_METADATA = TensorMetadata(name="probabilities", datatype=FP32, shape=[-1, 2])


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(default_factory=list)
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] | None = Field(
        None, description="the ensemble's: `labels`, the classes its `label` output names"
    )


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class RequestInput(BaseModel):
    name: str
    shape: list[StrictInt]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] = Field(description="row-major values, flat or nested as the shape")


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    # Its example, of the model's width, is added to each app's document (src/oip/routing.py).
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = Field(
        None, description="the outputs to answer; all if absent"
    )


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Literal["FP32", "BYTES"]
    parameters: dict[str, Any] | None = None
    data: list[float] | list[str] | None = Field(
        None, description="row-major, flat; absent for a binary output (binary_data_size)"
    )


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


def feature_rows(request: InferenceRequest, max_rows: int, spec: RowSpec) -> list[list[float]]:
    """The request's rows of F finite numbers, or TensorError naming what is wrong."""
    tensor = checked_input(request, max_rows, spec.n_features)
    rows = tensor.shape[0]
    data = tensor.data
    width = spec.n_features
    if len(data) == rows * width and not any(isinstance(value, list) for value in data):
        data = [data[start : start + width] for start in range(0, len(data), width)]
    elif len(data) != rows:
        raise TensorError(
            f"input {INPUT_NAME!r}: shape {tensor.shape} needs {rows * width} values "
            f"(flat) or {rows} rows (nested), got {len(data)} items"
        )
    try:
        return request_model(spec)(data=data).data
    except ValidationError as error:
        raise TensorError(f"input {INPUT_NAME!r}: {_describe(error)}") from None


def checked_input(request: InferenceRequest, max_rows: int, n_features: int) -> RequestInput:
    """The request's one input once its name, datatype, shape and row count are checked.

    Everything but its values, which `feature_rows` (or the fast path) checks next.
    """
    names = [tensor.name for tensor in request.inputs]
    if names != [INPUT_NAME]:
        raise TensorError(f"expected one input named {INPUT_NAME!r}, got {names}")
    (tensor,) = request.inputs
    if tensor.datatype != FP32:
        raise TensorError(f"input {INPUT_NAME!r}: datatype must be {FP32}, got {tensor.datatype!r}")
    if len(tensor.shape) != 2 or tensor.shape[1] != n_features or tensor.shape[0] < 1:
        raise TensorError(
            f"input {INPUT_NAME!r}: shape must be [rows, {n_features}] with rows >= 1, "
            f"got {tensor.shape}"
        )
    if problem := row_limit_error(tensor.shape[0], max_rows):
        raise TensorError(f"input {INPUT_NAME!r}: {problem}")
    return tensor


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:3]:
        # loc is ("data", row[, column]) in PredictRequest's terms.
        where = ", ".join(
            f"{name} {index}"
            for name, index in zip(("row", "column"), item["loc"][1:], strict=False)
        )
        problems.append(f"{where}: {item['msg']}" if where else item["msg"])
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def selected_outputs(request: InferenceRequest, names: list[str]) -> list[str]:
    """The names of the outputs the request asks for (all when it names none), or TensorError."""
    if not request.outputs:
        return names
    wanted = [output.name for output in request.outputs]
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise TensorError(f"unknown output {unknown}; the model has {names}")
    return wanted

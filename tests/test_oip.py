"""The Open Inference Protocol's tensor rule (src/oip/), without a process."""

import json

import numpy as np
import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from src.oip.inference import read_inference
from src.oip.schemas import InferenceRequest, TensorError, feature_rows, selected_outputs
from tests.bad_inputs import IRIS_ROWS

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.5, 3.0, 5.5, 1.8]]


def request(data, shape, name="input", datatype="FP32", outputs=None) -> InferenceRequest:
    tensor = {"name": name, "shape": shape, "datatype": datatype, "data": data}
    return InferenceRequest.model_validate({"inputs": [tensor], "outputs": outputs})


def test_flat_and_nested_data_give_the_same_rows():
    flat = [value for row in ROWS for value in row]
    assert feature_rows(request(ROWS, [2, 4]), 10, IRIS_ROWS) == ROWS
    assert feature_rows(request(flat, [2, 4]), 10, IRIS_ROWS) == ROWS


@pytest.mark.parametrize(
    ("data", "shape", "message"),
    [
        (ROWS, [2, 3], "shape must be [rows, 4]"),
        (ROWS, [0, 4], "rows >= 1"),
        (ROWS, [2, 4, 1], "shape must be [rows, 4]"),
        (ROWS, [3, 4], "needs 12 values (flat) or 3 rows (nested), got 2 items"),
        ([1, 2, 3, 4, 5, 6, 7, 8], [1, 4], "got 8 items"),
        ([[1, 2, 3, 4], 5, 6, 7], [1, 4], "got 4 items"),
        ([[1, 2, 3]], [1, 4], "row 0: List should have at least 4 items"),
        ([[[1, 2, 3, 4]]], [1, 4], "row 0, column 0: Input should be a valid number"),
        ([1, None, 3, 4], [1, 4], "row 0, column 1"),
        ([float("nan"), 2, 3, 4], [1, 4], "finite number"),
        ([1, 2, 3, float("inf")], [1, 4], "row 0, column 3: Input should be a finite number"),
        ([[1, 2, 3, 4]] * 11, [11, 4], "at most 10 rows per request, got 11"),
    ],
)
def test_bad_tensors_are_refused_naming_the_problem(data, shape, message):
    with pytest.raises(TensorError) as raised:
        feature_rows(request(data, shape), 10, IRIS_ROWS)
    assert message in str(raised.value)


def test_name_and_datatype_must_be_the_models():
    with pytest.raises(TensorError, match="one input named 'input', got \\['X'\\]"):
        feature_rows(request(ROWS, [2, 4], name="X"), 10, IRIS_ROWS)
    with pytest.raises(TensorError, match="datatype must be FP32, got 'FP16'"):
        feature_rows(request(ROWS, [2, 4], datatype="FP16"), 10, IRIS_ROWS)


def test_many_problems_are_summed_up():
    with pytest.raises(TensorError, match=r"\(and 5 more\)"):
        feature_rows(request([["a"] * 4, ["b"] * 4], [2, 4]), 10, IRIS_ROWS)


def test_selected_outputs():
    names = ["label", "proba"]
    assert selected_outputs(request(ROWS, [2, 4]), names) == names
    asked = request(ROWS, [2, 4], outputs=[{"name": "proba"}])
    assert selected_outputs(asked, names) == ["proba"]
    with pytest.raises(TensorError, match="unknown output \\['logits'\\]"):
        selected_outputs(request(ROWS, [2, 4], outputs=[{"name": "logits"}]), names)


# The fast path of an inference request (src/oip/inference.py) must never accept what the
# schema rejects, and must read the same rows when it accepts.
_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
    st.booleans(),
    st.none(),
    st.sampled_from(["5.1", "input"]),
)
_values = st.one_of(
    st.lists(_value, max_size=12),
    st.lists(st.lists(_value, min_size=3, max_size=5), max_size=4),
    st.lists(
        st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=4, max_size=4),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=4, max_size=12),
)
_tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input", "X"]),
        "shape": st.sampled_from([[1, 4], [2, 4], [3, 4], [5, 4]])
        | st.lists(st.integers(-1, 5), min_size=1, max_size=3),
        "datatype": st.sampled_from(["FP32", "FP64"]),
        "data": _values,
    }
)


_number = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-1000, 1000)


@st.composite
def _near_valid_tensor(draw):
    # Rows that fit their shape, nested or flat, where one value may be anything.
    rows = draw(st.integers(1, 5))
    values = draw(st.lists(_number, min_size=rows * 4, max_size=rows * 4))
    if draw(st.booleans()):
        values[draw(st.integers(0, len(values) - 1))] = draw(_value)
    data = values if draw(st.booleans()) else [values[i : i + 4] for i in range(0, len(values), 4)]
    return {"name": "input", "shape": [rows, 4], "datatype": "FP32", "data": data}


def _schema_rows(raw: bytes, max_rows: int):
    try:
        return feature_rows(InferenceRequest.model_validate(json.loads(raw)), max_rows, IRIS_ROWS)
    except (ValueError, ValidationError):
        return None


@settings(max_examples=500, deadline=None)
@given(
    tensor=_tensor | _near_valid_tensor(), outputs=st.none() | st.just([{"name": "probabilities"}])
)
def test_the_fast_path_agrees_with_the_schema_or_defers_to_it(tensor, outputs):
    raw = json.dumps({"inputs": [tensor], "outputs": outputs}).encode()
    try:
        inference = read_inference(raw, None, "application/json", max_rows=4, spec=IRIS_ROWS)
    except (TensorError, RequestValidationError):
        assert _schema_rows(raw, max_rows=4) is None
        return
    assert inference.rows.tolist() == _schema_rows(raw, max_rows=4)


def test_binary_rows_are_read_as_sent():
    rows = np.array(ROWS, dtype="<f4")
    header = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32"}]}
    header["inputs"][0]["parameters"] = {"binary_data_size": rows.nbytes}
    head = json.dumps(header).encode()
    inference = read_inference(
        head + rows.tobytes(), str(len(head)), None, max_rows=4, spec=IRIS_ROWS
    )
    np.testing.assert_array_equal(inference.rows, rows)
    assert not inference.binary_output("probabilities")

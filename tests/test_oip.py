"""The Open Inference Protocol's tensor rule (src/oip/schemas.py), without a process."""

import pytest

from src.oip.schemas import InferenceRequest, TensorError, feature_rows, selected_outputs

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.5, 3.0, 5.5, 1.8]]


def request(data, shape, name="input", datatype="FP32", outputs=None) -> InferenceRequest:
    tensor = {"name": name, "shape": shape, "datatype": datatype, "data": data}
    return InferenceRequest.model_validate({"inputs": [tensor], "outputs": outputs})


def test_flat_and_nested_data_give_the_same_rows():
    flat = [value for row in ROWS for value in row]
    assert feature_rows(request(ROWS, [2, 4]), 10) == ROWS
    assert feature_rows(request(flat, [2, 4]), 10) == ROWS


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
        feature_rows(request(data, shape), 10)
    assert message in str(raised.value)


def test_name_and_datatype_must_be_the_models():
    with pytest.raises(TensorError, match="one input named 'input', got \\['X'\\]"):
        feature_rows(request(ROWS, [2, 4], name="X"), 10)
    with pytest.raises(TensorError, match="datatype must be FP32, got 'FP16'"):
        feature_rows(request(ROWS, [2, 4], datatype="FP16"), 10)


def test_many_problems_are_summed_up():
    with pytest.raises(TensorError, match=r"\(and 5 more\)"):
        feature_rows(request([["a"] * 4, ["b"] * 4], [2, 4]), 10)


def test_selected_outputs():
    names = ["label", "proba"]
    assert selected_outputs(request(ROWS, [2, 4]), names) == names
    asked = request(ROWS, [2, 4], outputs=[{"name": "proba"}])
    assert selected_outputs(asked, names) == ["proba"]
    with pytest.raises(TensorError, match="unknown output \\['logits'\\]"):
        selected_outputs(request(ROWS, [2, 4], outputs=[{"name": "logits"}]), names)

"""A real class service over the Open Inference Protocol v2: raw HTTP and tritonclient."""

import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tooling.processes import ProcessStarter

ROWS = [[5.1, 3.5, 1.4, 0.2], [5.9, 3.0, 4.2, 1.5], [6.5, 3.0, 5.5, 1.8]]
INFER = "/v2/models/versicolor/infer"


@pytest.fixture(scope="module")
def versicolor(tmp_path_factory):
    starter = ProcessStarter(tmp_path_factory.mktemp("service-v2"))
    yield starter.start_http(
        "versicolor", ["src.services"], {"MODE": "versicolor", "MAX_ROWS": "50"}
    )
    starter.stop_all()


def tensor(data, shape=None, name="input", datatype="FP32") -> dict:
    shape = shape if shape is not None else list(np.shape(data))
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}


def test_server_and_model_metadata_and_health(versicolor):
    url = versicolor.base_url
    assert httpx.get(url + "/v2").json()["name"] == "class-service"
    assert httpx.get(url + "/v2/health/live").json() == {"live": True}
    assert httpx.get(url + "/v2/health/ready").json() == {"ready": True}
    assert httpx.get(url + "/v2/models/versicolor/ready").json() == {
        "name": "versicolor",
        "ready": True,
    }
    metadata = httpx.get(url + "/v2/models/versicolor").json()
    assert metadata["name"] == "versicolor"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]


@pytest.mark.parametrize(
    "data", [ROWS, [value for row in ROWS for value in row]], ids=["nested", "flat"]
)
def test_infer_answers_what_predict_answers(versicolor, data):
    response = httpx.post(versicolor.base_url + INFER, json={**tensor(data, [3, 4]), "id": "r1"})
    assert response.status_code == 200
    body = response.json()
    predict = httpx.post(versicolor.base_url + "/predict", json={"data": ROWS}).json()
    assert body["model_name"] == "versicolor" and body["id"] == "r1"
    (output,) = body["outputs"]
    assert output["name"] == "probabilities" and output["datatype"] == "FP32"
    assert output["shape"] == [3, 2]
    assert np.reshape(output["data"], (3, 2)).tolist() == predict["predictions"]


BAD_TENSORS = [
    ("wrong-shape", tensor([[1, 2, 3]]), "shape must be [rows, 4]"),
    ("shape-not-data", tensor([1, 2, 3, 4, 5, 6, 7], [2, 4]), "needs 8 values"),
    ("wrong-datatype", tensor(ROWS, datatype="FP64"), "datatype must be FP32"),
    ("wrong-name", tensor(ROWS, name="features"), "one input named 'input'"),
    ("two-inputs", {"inputs": tensor(ROWS)["inputs"] * 2}, "one input named 'input'"),
    ("string-value", tensor([[1, "2", 3, 4]]), "row 0, column 1"),
    ("boolean-value", tensor([[1, True, 3, 4]]), "valid number"),
    ("too-many-rows", tensor([[1, 2, 3, 4]] * 51), "at most 50 rows"),
    ("unknown-output", {**tensor(ROWS), "outputs": [{"name": "logits"}]}, "unknown output"),
    ("no-inputs", {"id": "x"}, "inputs: Field required"),
]


@pytest.mark.parametrize(("case", "body", "message"), BAD_TENSORS, ids=[c[0] for c in BAD_TENSORS])
def test_bad_tensors_get_400_naming_the_problem(versicolor, case, body, message):
    response = httpx.post(versicolor.base_url + INFER, json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_values_get_400(versicolor, value):
    # Python's JSON parser reads these literals; the tensor rule must still refuse them.
    body = '{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, %s, 4]}]}'  # noqa: E501
    response = httpx.post(versicolor.base_url + INFER, content=body % value)
    assert response.status_code == 400
    assert "row 0, column 2: Input should be a finite number" in response.json()["error"]


def test_body_that_is_not_json_or_not_utf8_gets_400(versicolor):
    for content in (b'{"inputs": [', b'{"inputs": "\xff"}'):
        response = httpx.post(
            versicolor.base_url + INFER,
            content=content,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 400 and response.json()["error"]


def test_max_rows_is_accepted(versicolor):
    response = httpx.post(versicolor.base_url + INFER, json=tensor([[1, 2, 3, 4]] * 50))
    assert response.status_code == 200 and response.json()["outputs"][0]["shape"] == [50, 2]


@pytest.mark.parametrize(
    "path", ["/v2/models/setosa", "/v2/models/setosa/ready", "/v2/models/setosa/infer"]
)
def test_unknown_model_gets_404_even_with_a_bad_body(versicolor, path):
    if path.endswith("/infer"):
        response = httpx.post(versicolor.base_url + path, json={"inputs": "none"})
    else:
        response = httpx.get(versicolor.base_url + path)
    assert response.status_code == 404
    assert "unknown model 'setosa'" in response.json()["error"]


def test_tritonclient_infers_the_same_numbers_as_predict(versicolor):
    client = triton.InferenceServerClient(versicolor.base_url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("versicolor")
    assert client.get_model_metadata("versicolor")["inputs"][0]["name"] == "input"
    rows = np.array(ROWS, dtype=np.float32)
    infer_input = triton.InferInput("input", list(rows.shape), "FP32")
    infer_input.set_data_from_numpy(rows, binary_data=False)
    wanted = triton.InferRequestedOutput("probabilities", binary_data=False)
    result = client.infer("versicolor", [infer_input], outputs=[wanted], request_id="t-1")
    predict = httpx.post(versicolor.base_url + "/predict", json={"data": ROWS}).json()
    expected = np.array(predict["predictions"], dtype=np.float32)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), expected)
    assert result.get_response()["id"] == "t-1"
    # With no outputs named, tritonclient asks for binary outputs; JSON ones are read too.
    np.testing.assert_array_equal(
        client.infer("versicolor", [infer_input]).as_numpy("probabilities"), expected
    )


def test_tritonclient_defaults_binary_in_and_out_answer_what_json_answers(versicolor):
    client = triton.InferenceServerClient(versicolor.base_url.removeprefix("http://"))
    rows = np.array(ROWS, dtype=np.float32)
    binary_input = triton.InferInput("input", list(rows.shape), "FP32")
    binary_input.set_data_from_numpy(rows)  # binary by default
    json_input = triton.InferInput("input", list(rows.shape), "FP32")
    json_input.set_data_from_numpy(rows, binary_data=False)
    as_json = client.infer(
        "versicolor",
        [json_input],
        outputs=[triton.InferRequestedOutput("probabilities", binary_data=False)],
    )
    binary = client.infer(
        "versicolor",
        [binary_input],
        outputs=[triton.InferRequestedOutput("probabilities")],  # binary by default
        request_id="b-1",
    )
    assert binary.get_response()["outputs"][0]["parameters"] == {"binary_data_size": 3 * 2 * 4}
    assert binary.get_response()["id"] == "b-1"
    np.testing.assert_array_equal(
        binary.as_numpy("probabilities"), as_json.as_numpy("probabilities")
    )
    # No outputs named: tritonclient asks for every output in binary (binary_data_output).
    np.testing.assert_array_equal(
        client.infer("versicolor", [binary_input]).as_numpy("probabilities"),
        as_json.as_numpy("probabilities"),
    )


def binary_request(header: dict, tensor_bytes: bytes, header_length: int | None = None):
    head = json.dumps(header).encode()
    length = str(len(head) if header_length is None else header_length)
    return {"content": head + tensor_bytes, "headers": {"Inference-Header-Content-Length": length}}


def binary_header(rows: int, size: int, **tensor) -> dict:
    described = {"name": "input", "shape": [rows, 4], "datatype": "FP32"}
    return {"inputs": [{**described, **tensor, "parameters": {"binary_data_size": size}}]}


ONE_ROW = np.array([ROWS[0]], dtype="<f4").tobytes()
BAD_BINARY = [
    ("header-length-not-a-number", binary_request(binary_header(1, 16), ONE_ROW, "x"), "x"),
    (
        "header-length-past-the-body",
        binary_request(binary_header(1, 16), ONE_ROW, 10**6),
        "at most",
    ),
    (
        "header-not-json",
        {"content": b"{nope" + ONE_ROW, "headers": {"Inference-Header-Content-Length": "5"}},
        "not JSON",
    ),
    ("size-past-the-body", binary_request(binary_header(1, 64), ONE_ROW), "binary_data_size"),
    ("bytes-left-over", binary_request(binary_header(1, 8), ONE_ROW), "add up to 8"),
    ("size-not-the-shape", binary_request(binary_header(2, 16), ONE_ROW), "needs 32 bytes"),
    (
        "both-data-and-bytes",
        binary_request(binary_header(1, 16, data=[1, 2, 3, 4]), ONE_ROW),
        "both data",
    ),
    ("wrong-datatype", binary_request(binary_header(1, 16, datatype="FP64"), ONE_ROW), "FP32"),
    (
        "nan",
        binary_request(binary_header(1, 16), np.array([[1, np.nan, 3, 4]], "<f4").tobytes()),
        "row 0, column 1: Input should be a finite number",
    ),
    ("too-many-rows", binary_request(binary_header(51, 51 * 16), ONE_ROW * 51), "at most 50 rows"),
]


@pytest.mark.parametrize(("case", "sent", "message"), BAD_BINARY, ids=[c[0] for c in BAD_BINARY])
def test_bad_binary_requests_get_400_naming_the_problem(versicolor, case, sent, message):
    response = httpx.post(versicolor.base_url + INFER, **sent)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_a_10000_row_binary_request_is_answered_in_binary(tmp_path):
    starter = ProcessStarter(tmp_path)
    try:
        service = starter.start_http("big", ["src.services"], {"MODE": "versicolor"})
        rows = np.random.default_rng(0).uniform(0, 8, (10_000, 4)).astype("<f4")
        header = {**binary_header(10_000, rows.nbytes), "parameters": {"binary_data_output": True}}
        response = httpx.post(service.base_url + INFER, **binary_request(header, rows.tobytes()))
        assert response.status_code == 200
        length = int(response.headers["inference-header-content-length"])
        answer = json.loads(response.content[:length])
        assert answer["outputs"][0]["shape"] == [10_000, 2]
        probabilities = np.frombuffer(response.content[length:], "<f4").reshape(10_000, 2)
        predict = httpx.post(service.base_url + "/predict", json={"data": rows.tolist()}).json()
        np.testing.assert_array_equal(probabilities, np.array(predict["predictions"], "<f4"))
    finally:
        starter.stop_all()


def test_tritonclient_sees_the_protocol_errors(versicolor):
    client = triton.InferenceServerClient(versicolor.base_url.removeprefix("http://"))
    infer_input = triton.InferInput("input", [1, 4], "FP32")
    infer_input.set_data_from_numpy(
        np.array([[1, 2, np.nan, 4]], dtype=np.float32), binary_data=False
    )
    with pytest.raises(InferenceServerException, match="finite number"):
        client.infer("versicolor", [infer_input])
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_metadata("rose")

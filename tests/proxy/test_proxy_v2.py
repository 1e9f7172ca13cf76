"""The proxy over the Open Inference Protocol v2: the `iris` ensemble, the routed class models."""

import signal

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.metrics import metric_value
from tooling.processes import CLASSES

ROWS = [[5.1, 3.5, 1.4, 0.2], [5.9, 3.0, 4.2, 1.5], [6.5, 3.0, 5.5, 1.8]]


def tensor(data, shape=None, name="input", datatype="FP32") -> dict:
    shape = shape if shape is not None else list(np.shape(data))
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}


def client_for(process) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(process.base_url.removeprefix("http://"))


def json_input(rows) -> triton.InferInput:
    array = np.array(rows, dtype=np.float32)
    infer_input = triton.InferInput("input", list(array.shape), "FP32")
    infer_input.set_data_from_numpy(array, binary_data=False)
    return infer_input


def test_iris_answers_what_predict_label_answers(suite):
    response = httpx.post(suite.proxy.base_url + "/v2/models/iris/infer", json=tensor(ROWS))
    assert response.status_code == 200
    body = response.json()
    label = httpx.post(suite.proxy.base_url + "/predict/label", json={"data": ROWS}).json()
    outputs = {output["name"]: output for output in body["outputs"]}
    assert outputs["label"] == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [3],
        "data": [entry["label"] for entry in label["predictions"]],
    }
    assert outputs["proba"]["datatype"] == "FP32" and outputs["proba"]["shape"] == [3]
    assert outputs["proba"]["data"] == [entry["proba"] for entry in label["predictions"]]
    assert outputs["label"]["data"] == ["setosa", "versicolor", "virginica"]
    assert body["parameters"] == {
        "unavailable": [],
        "model_versions": {"setosa": "1", "versicolor": "1", "virginica": "1"},
    }


def test_tritonclient_against_the_ensemble_and_each_routed_class_model(suite):
    client = client_for(suite.proxy)
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "proxy"
    assert client.is_model_ready("iris")
    assert client.get_model_metadata("iris")["platform"] == "ensemble"
    flat = [value for row in ROWS for value in row]
    label = httpx.post(suite.proxy.base_url + "/predict/label", json={"data": ROWS}).json()
    # No outputs named: tritonclient asks for them in binary, where BYTES are bytes.
    result = client.infer("iris", [json_input(ROWS)])
    labels = [e["label"].encode() for e in label["predictions"]]
    assert result.as_numpy("label").tolist() == labels
    np.testing.assert_array_equal(
        result.as_numpy("proba"),
        np.array([e["proba"] for e in label["predictions"]], dtype=np.float32),
    )
    predict = httpx.post(suite.proxy.base_url + "/predict", json={"data": ROWS}).json()
    for name in CLASSES:
        assert client.is_model_ready(name)
        assert client.get_model_metadata(name)["name"] == name
        wanted = triton.InferRequestedOutput("probabilities", binary_data=False)
        routed = client.infer(name, [json_input(ROWS)], outputs=[wanted])
        np.testing.assert_array_equal(
            routed.as_numpy("probabilities"),
            np.array(predict[name]["predictions"], dtype=np.float32),
        )
    # Flat data and one named output are the protocol's too.
    body = {**tensor(flat, [3, 4]), "outputs": [{"name": "label"}]}
    response = httpx.post(suite.proxy.base_url + "/v2/models/iris/infer", json=body).json()
    assert [output["name"] for output in response["outputs"]] == ["label"]


def binary_input(rows) -> triton.InferInput:
    array = np.array(rows, dtype=np.float32)
    infer_input = triton.InferInput("input", list(array.shape), "FP32")
    infer_input.set_data_from_numpy(array)  # tritonclient's default: binary
    return infer_input


def test_tritonclient_defaults_binary_in_and_out_answer_what_json_answers(suite):
    client = client_for(suite.proxy)
    as_json = client.infer(
        "iris",
        [json_input(ROWS)],
        outputs=[
            triton.InferRequestedOutput(name, binary_data=False) for name in ("label", "proba")
        ],
    )
    binary = client.infer(
        "iris",
        [binary_input(ROWS)],
        outputs=[triton.InferRequestedOutput("label"), triton.InferRequestedOutput("proba")],
    )
    sizes = {o["name"]: o["parameters"] for o in binary.get_response()["outputs"]}
    assert sizes["proba"] == {"binary_data_size": 3 * 4}
    # tritonclient reads BYTES as bytes in binary and as str in JSON.
    as_text = [label.decode() for label in binary.as_numpy("label").tolist()]
    assert as_text == as_json.as_numpy("label").tolist()
    np.testing.assert_array_equal(binary.as_numpy("proba"), as_json.as_numpy("proba"))
    # No outputs named: every output in binary; the labels as tritonclient reads BYTES.
    every = client.infer("iris", [binary_input(ROWS)])
    assert every.as_numpy("label").tolist() == [b"setosa", b"versicolor", b"virginica"]
    for name in CLASSES:
        wanted = triton.InferRequestedOutput("probabilities", binary_data=False)
        json_answer = client.infer(name, [json_input(ROWS)], outputs=[wanted])
        routed = client.infer(name, [binary_input(ROWS)])  # binary both ways, through the proxy
        assert routed.get_response()["model_name"] == name
        np.testing.assert_array_equal(
            routed.as_numpy("probabilities"), json_answer.as_numpy("probabilities")
        )


def test_a_bad_binary_request_is_400_at_the_proxy(suite):
    head = b'{"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", '
    head += b'"parameters": {"binary_data_size": 16}}]}'
    for model in ("iris", "setosa"):
        response = httpx.post(
            suite.proxy.base_url + f"/v2/models/{model}/infer",
            content=head + np.zeros(4, "<f4").tobytes(),
            headers={"Inference-Header-Content-Length": str(len(head))},
        )
        assert response.status_code == 400
        assert "needs 32 bytes of binary data, got 16" in response.json()["error"]


BAD_TENSORS = [
    ("wrong-shape", tensor([[1, 2, 3]]), "shape must be [rows, 4]"),
    ("wrong-datatype", tensor(ROWS, datatype="INT32"), "datatype must be FP32"),
    ("wrong-name", tensor(ROWS, name="X"), "one input named 'input'"),
    ("boolean", tensor([[1, True, 3, 4]]), "valid number"),
    ("unknown-output", {**tensor(ROWS), "outputs": [{"name": "probabilities"}]}, "unknown output"),
]


@pytest.mark.parametrize(("case", "body", "message"), BAD_TENSORS, ids=[c[0] for c in BAD_TENSORS])
@pytest.mark.parametrize("model", ["iris", "setosa"])
def test_bad_tensors_get_400_at_the_proxy(suite, model, case, body, message):
    if model == "setosa" and case == "unknown-output":
        body = {**tensor(ROWS), "outputs": [{"name": "label"}]}
    response = httpx.post(suite.proxy.base_url + f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_nan_and_more_than_max_rows_are_400_and_never_reach_a_service(suite):
    nan = '{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [NaN, 1, 2, 3]}]}'  # noqa: E501
    response = httpx.post(suite.proxy.base_url + "/v2/models/iris/infer", content=nan)
    assert response.status_code == 400 and "finite number" in response.json()["error"]
    too_many = tensor([[1, 2, 3, 4]] * 10_001)
    response = httpx.post(suite.proxy.base_url + "/v2/models/iris/infer", json=too_many)
    assert response.status_code == 400 and "at most 10000 rows" in response.json()["error"]
    # The services log every request: none of this module's bad tensors got through.
    for service in suite.services.values():
        assert "infer 400" not in service.log() and "/predict 422" not in service.log()
        assert "infer 200" in service.log() or "/predict 200" in service.log()


def test_unknown_model_is_404_naming_the_models(suite):
    for method, path in [("GET", ""), ("GET", "/ready"), ("POST", "/infer")]:
        response = httpx.request(
            method, suite.proxy.base_url + f"/v2/models/rose{path}", json=tensor(ROWS)
        )
        assert response.status_code == 404
        assert "unknown model 'rose'" in response.json()["error"]
        assert "iris" in response.json()["error"]
    with pytest.raises(InferenceServerException, match="unknown model"):
        client_for(suite.proxy).infer("rose", [json_input(ROWS)])


def test_a_killed_service_degrades_iris_and_makes_its_own_model_503(own_suite):
    own_suite.services["virginica"].signal(signal.SIGKILL)
    own_suite.services["virginica"].popen.wait(10)
    base = own_suite.proxy.base_url
    body = httpx.post(base + "/v2/models/iris/infer", json=tensor(ROWS)).json()
    label = httpx.post(base + "/predict/label", json={"data": ROWS}).json()
    assert body["parameters"] == {
        "unavailable": ["virginica"],
        "model_versions": {"setosa": "1", "versicolor": "1"},
    }
    assert label["unavailable"] == ["virginica"]
    assert label["model_versions"] == {"setosa": "1", "versicolor": "1"}
    assert body["outputs"][0]["data"] == [entry["label"] for entry in label["predictions"]]
    assert body["outputs"][0]["data"][:2] == ["setosa", "versicolor"]
    assert metric_value(base, "proxy_degraded_answers_total", answer="ensemble") == 1
    assert httpx.get(base + "/v2/health/ready").status_code == 200
    for path in ["", "/ready"]:
        response = httpx.get(base + f"/v2/models/virginica{path}")
        assert response.status_code == 503
        assert response.json()["services"]["virginica"]["error"] == "unreachable"
    response = httpx.post(base + "/v2/models/virginica/infer", json=tensor(ROWS))
    assert response.status_code == 503 and response.json()["error"] == "service virginica failed"
    # The others are still routed.
    assert httpx.post(base + "/v2/models/setosa/infer", json=tensor(ROWS)).status_code == 200


def test_every_service_down_makes_iris_and_readiness_503(own_suite):
    for service in own_suite.services.values():
        service.signal(signal.SIGKILL)
        service.popen.wait(10)
    base = own_suite.proxy.base_url
    response = httpx.post(base + "/v2/models/iris/infer", json=tensor(ROWS))
    assert response.status_code == 503
    assert response.json()["error"] == "every service failed"
    assert set(response.json()["services"]) == set(CLASSES)
    assert httpx.get(base + "/v2/health/ready").status_code == 503
    assert httpx.get(base + "/v2/models/iris/ready").status_code == 503
    assert not client_for(own_suite.proxy).is_server_ready()
    assert httpx.get(base + "/v2/health/live").status_code == 200

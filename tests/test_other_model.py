"""The horizontal suite serving another model set, from configuration alone.

wine (13 features, 3 classes, trained by the `wine_models` fixture) instead of the
committed iris set: the class services read the width from their model files, the proxy
learns it from them, and every surface (rows, OIP tensors, /metadata, OpenAPI, errors)
says 13. The batch API and job against the same set are in tests/api and tests/task.
"""

import json
import subprocess
import sys

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from src.ml.train import load_data, model_path
from tooling.processes import (
    REPO_ROOT,
    ProcessStarter,
    clean_environment,
    free_port,
    start_horizontal_suite,
    wait_until_healthy,
)

WINE_CLASSES = ("class_0", "class_1", "class_2")


def wine_service_env(models):
    def env(name: str) -> dict[str, str]:
        return {"MODEL_REPOSITORY": str(models), "LABEL_FILEPATH": str(models / "label.json")}

    return env


@pytest.fixture(scope="module")
def wine_suite(tmp_path_factory, wine_models):
    starter = ProcessStarter(tmp_path_factory.mktemp("wine-suite"))
    yield start_horizontal_suite(
        starter,
        {"ENSEMBLE_NAME": "wine", "MAX_ROWS": "500"},
        classes=WINE_CLASSES,
        service_env=wine_service_env(wine_models),
    )
    starter.stop_all()


@pytest.fixture(scope="module")
def wine_rows():
    features, target, _ = load_data("wine")
    # Every tenth row: all three classes, as float32 like the models take them.
    return features[::10].astype(np.float64), target[::10]


def test_class_services_take_rows_of_13_numbers(wine_suite, wine_rows, wine_models):
    rows, target = wine_rows
    service = wine_suite.services["class_1"].base_url
    metadata = httpx.get(service + "/metadata").json()
    assert metadata["data_structure"] == "(N, 13)"
    assert metadata["data_sample"] == [json.loads((wine_models / "sample.json").read_text())]
    answer = httpx.post(service + "/predict", json={"data": rows.tolist()}).json()
    p_class_1 = np.array(answer["predictions"])[:, 0]
    assert ((p_class_1 > 0.5) == (target == 1)).mean() >= 0.9
    assert httpx.get(service + "/health").json() == {
        "health": "ok",
        "model": "class_1",
        "features": 13,
        "model_version": "1",
    }
    refused = httpx.post(service + "/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]})
    assert refused.status_code == 422
    assert "at least 13 items" in refused.json()["error"]


def test_proxy_learns_the_width_and_labels_wine_rows(wine_suite, wine_rows, wine_models):
    rows, target = wine_rows
    proxy = wine_suite.proxy.base_url
    metadata = httpx.get(proxy + "/metadata").json()
    assert metadata["data_structure"] == "(N, 13)"
    assert metadata["data_sample"] == [json.loads((wine_models / "sample.json").read_text())]
    labels = httpx.post(proxy + "/predict/label", json={"data": rows.tolist()}).json()
    predicted = [item["label"] for item in labels["predictions"]]
    expected = [WINE_CLASSES[index] for index in target]
    assert np.mean(np.array(predicted) == np.array(expected)) >= 0.9
    assert labels["unavailable"] == []
    # The sample row is the first wine row, a class_0 wine.
    test_answer = httpx.post(proxy + "/predict/post/test").json()
    assert set(test_answer) == set(WINE_CLASSES)
    assert max(test_answer, key=lambda name: test_answer[name]["prediction"][0]) == "class_0"


def test_proxy_refuses_rows_of_the_wrong_width_as_a_service_would(wine_suite):
    body = {"data": [[5.1, 3.5, 1.4, 0.2]]}
    from_proxy = httpx.post(wine_suite.proxy.base_url + "/predict/label", json=body)
    from_service = httpx.post(wine_suite.services["class_0"].base_url + "/predict", json=body)
    assert from_proxy.status_code == from_service.status_code == 422
    assert from_proxy.json() == from_service.json()


def test_every_openapi_document_says_13(wine_suite):
    for process in [wine_suite.proxy, *wine_suite.services.values()]:
        document = httpx.get(process.base_url + "/openapi.json").json()
        request = document["components"]["schemas"]["PredictRequest"]
        row = request["properties"]["data"]["items"]
        assert (row["minItems"], row["maxItems"]) == (13, 13), process.name
        assert request["properties"]["data"]["description"] == "rows of 13 numbers"
        assert "iris" not in json.dumps(document).lower(), process.name
        example = document["components"]["schemas"]["InferenceRequest"]["examples"][0]
        assert example["inputs"][0]["shape"] == [1, 13]


def test_tritonclient_reads_the_real_shape_and_infers(wine_suite, wine_rows):
    rows, target = wine_rows
    client = triton.InferenceServerClient(wine_suite.proxy.base_url.removeprefix("http://"))
    try:
        ensemble = client.get_model_metadata("wine")
        assert ensemble["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 13]}]
        assert ensemble["parameters"] == {"labels": list(WINE_CLASSES)}
        assert client.get_model_metadata("class_2")["inputs"][0]["shape"] == [-1, 13]
        # tritonclient's defaults: binary tensors both ways.
        tensor = triton.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows.astype(np.float32))
        result = client.infer("wine", [tensor], outputs=[triton.InferRequestedOutput("label")])
        labels = [label.decode() for label in result.as_numpy("label")]
        assert np.mean(np.array(labels) == np.array([WINE_CLASSES[i] for i in target])) >= 0.9
        one = client.infer("class_0", [tensor])
        assert one.as_numpy("probabilities").shape == (len(rows), 2)
    finally:
        client.close()


def test_proxy_health_all_names_a_service_whose_width_changed(tmp_path, wine_models):
    """A service replaced by a model of another width is unhealthy by name, not a 500 later."""
    starter = ProcessStarter(tmp_path)
    try:
        suite = start_horizontal_suite(
            starter,
            {"BREAKER_FAILURE_THRESHOLD": "0"},
            classes=("class_0", "class_1"),
            service_env=wine_service_env(wine_models),
        )
        replaced = suite.services["class_1"]
        replaced.stop()
        # The same address now serves an iris model (4 numbers per row).
        iris = starter.start("iris", ["src.services"], {"MODE": "setosa"}, port=replaced.port)
        wait_until_healthy(iris)
        health = httpx.get(suite.proxy.base_url + "/health/all")
        assert health.status_code == 200  # class_0 still answers
        entry = health.json()["class_1"]
        assert entry["health"] == "error" and entry["error"] == "width_mismatch"
        assert "rows of 4 numbers" in entry["detail"] and "rows of 13 numbers" in entry["detail"]
        assert health.json()["class_0"]["health"] == "ok"
        assert iris.alive()
    finally:
        starter.stop_all()


def test_proxy_refuses_to_start_when_services_disagree(tmp_path, wine_models):
    starter = ProcessStarter(tmp_path)
    try:
        wine = starter.start_http(
            "wine",
            ["src.services"],
            {"MODE": "class_0", **wine_service_env(wine_models)("class_0")},
        )
        iris = starter.start_http("iris", ["src.services"], {"MODE": "setosa"})
        proxy = starter.start(
            "proxy",
            ["src.proxy"],
            {"SERVICE_CLASS_0": wine.base_url, "SERVICE_SETOSA": iris.base_url},
            port=free_port(),
        )
        assert proxy.popen.wait(timeout=30) == 2
        (line,) = proxy.log().strip().splitlines()[-1:]
        assert line == (
            "proxy: cannot start: class services disagree about the row width "
            "(numbers per row: setosa: 4; class_0: 13)"
        )
    finally:
        starter.stop_all()


def test_proxy_gives_up_in_one_line_when_no_service_answers(tmp_path):
    starter = ProcessStarter(tmp_path)
    proxy = starter.start(
        "proxy",
        ["src.proxy"],
        {"SERVICE_A": f"http://127.0.0.1:{free_port()}", "SERVICES_WAIT": "1"},
        port=free_port(),
    )
    try:
        assert proxy.popen.wait(timeout=30) == 2
        assert proxy.log().strip().splitlines()[-1] == (
            "proxy: cannot start: no class service told its model's input within 1 s "
            "(GET /v2/models/<name> of a)"
        )
    finally:
        starter.stop_all()


def _onnx_model(path, input_type):
    from onnx import TensorProto, helper

    element = {"float": TensorProto.FLOAT, "int64": TensorProto.INT64}[input_type]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["probabilities"])],
        "g",
        [helper.make_tensor_value_info("input", element, ["N", 3])],
        [helper.make_tensor_value_info("probabilities", element, ["N", 3])],
    )
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    return path


@pytest.mark.parametrize(
    "case", ["integer input", "three outputs per row", "missing file", "multiclass"]
)
def test_a_class_service_refuses_a_model_it_cannot_serve_in_one_line(tmp_path, wine_models, case):
    files = {
        "integer input": _onnx_model(tmp_path / "int.onnx", "int64"),
        "three outputs per row": _onnx_model(tmp_path / "three.onnx", "float"),
        "missing file": tmp_path / "absent.onnx",
        "multiclass": model_path(wine_models, "wine"),
    }
    expected = {
        "integer input": "input 'input' is tensor(int64); expected tensor(float) or tensor(double)",
        "three outputs per row": "gives 3 probabilities per row; the class service of 'class_0'",
        "missing file": "model file not found",
        "multiclass": "gives 3 probabilities per row; the class service of 'class_0'",
    }
    env = {
        "MODE": "class_0",
        "MODEL_FILEPATH": str(files[case]),
        "LABEL_FILEPATH": str(wine_models / "label.json"),
        "PORT": str(free_port()),
    }
    finished = subprocess.run(
        [sys.executable, "-m", "src.services"],
        cwd=REPO_ROOT,
        env={**clean_environment(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2
    (line,) = finished.stderr.strip().splitlines()
    assert line.startswith("service class_0: cannot start: ")
    assert expected[case] in line and str(files[case]) in line

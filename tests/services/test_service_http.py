"""A real class service process over HTTP."""

import socket
import time

import httpx
import numpy as np
import pytest

from src.settings import CommonSettings, ProxySettings
from tests.bad_inputs import BAD_BODIES, BAD_BODY_IDS, JSON_HEADERS
from tests.batch_support import wait_for_log
from tooling.processes import ProcessStarter, port_is_free, wait_until_healthy


@pytest.fixture(scope="module")
def versicolor(tmp_path_factory):
    starter = ProcessStarter(tmp_path_factory.mktemp("service"))
    yield starter.start_http(
        "versicolor", ["src.services"], {"MODE": "versicolor", "MAX_ROWS": "50"}
    )
    starter.stop_all()


def test_health(versicolor):
    response = httpx.get(versicolor.base_url + "/health")
    assert response.status_code == 200
    assert response.json() == {
        "health": "ok",
        "model": "versicolor",
        "features": 4,
        "model_version": "1",
    }


def test_metadata_names_mode_and_model(versicolor):
    body = httpx.get(versicolor.base_url + "/metadata").json()
    assert body["mode"] == "versicolor"
    assert body["model_filepath"] == "models/versicolor/1/model.onnx"
    assert body["model_version"] == "1"
    assert body["data_structure"] == "(N, 4)"


def test_predict_returns_first_row_and_every_row(versicolor):
    rows = [[5.9, 3.0, 4.2, 1.5], [5.1, 3.5, 1.4, 0.2], [6.5, 3, 5.5, 1.8]]
    body = httpx.post(versicolor.base_url + "/predict", json={"data": rows}).json()
    predictions = np.array(body["predictions"])
    assert predictions.shape == (3, 2)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, atol=1e-5)
    assert body["prediction"] == body["predictions"][0]
    # The versicolor sample is the one this model is most sure of.
    assert predictions[:, 0].argmax() == 0 and predictions[0, 0] > 0.9


def test_predict_test_scores_the_fixed_sample(versicolor):
    sample = httpx.get(versicolor.base_url + "/predict/test").json()
    posted = httpx.post(versicolor.base_url + "/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]})
    assert sample == posted.json()
    assert sample["prediction"][0] < 0.5  # the sample is a setosa


@pytest.mark.parametrize(("case", "body", "message"), BAD_BODIES, ids=BAD_BODY_IDS)
def test_bad_input_gets_422_naming_the_problem(versicolor, case, body, message):
    response = httpx.post(versicolor.base_url + "/predict", content=body, headers=JSON_HEADERS)
    assert response.status_code == 422
    assert message in response.json()["error"] or message in str(response.json()["detail"])


def test_more_than_max_rows_is_422(versicolor):
    response = httpx.post(versicolor.base_url + "/predict", json={"data": [[1, 2, 3, 4]] * 51})
    assert response.status_code == 422
    assert "at most 50 rows" in response.json()["error"]
    ok = httpx.post(versicolor.base_url + "/predict", json={"data": [[1, 2, 3, 4]] * 50})
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 50


def test_form_encoded_body_gets_a_hint(versicolor):
    response = httpx.post(versicolor.base_url + "/predict", content='{"data": [[1, 2, 3, 4]]}')
    assert response.status_code == 422
    assert "Content-Type: application/json" in response.json()["hint"]


def test_the_id_query_parameter_traces_the_request_in_the_log(versicolor):
    response = httpx.post(
        versicolor.base_url + "/predict?id=trace-me-42", json={"data": [[1, 2, 3, 4]]}
    )
    assert response.headers["X-Request-ID"] == "trace-me-42"
    # The access line is written once the response is sent: it may trail the answer.
    wait_for_log(versicolor, "[trace-me-42] POST /predict 200", timeout=10)


@pytest.mark.parametrize("mode", ["setosa", "versicolor", "virginica"])
def test_port_defaults_by_mode(processes, mode):
    expected = {"setosa": 9101, "versicolor": 9102, "virginica": 9103}[mode]
    if not port_is_free(expected):
        pytest.skip(reason=f"port {expected} is taken on this machine (another suite running?)")
    # An empty PORT means "unset", so the class's default port applies.
    service = processes.start("default-port", ["src.services"], {"MODE": mode, "PORT": ""})
    service.port = expected
    wait_until_healthy(service)
    assert httpx.get(service.base_url + "/metadata").json()["mode"] == mode


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODE": "rose"}, "MODE='rose' is not a class"),
        ({"MODE": "setosa", "MODEL_FILEPATH": "/nonexistent/model.onnx"}, "model file not found"),
        ({"MODE": "setosa", "PORT": "not-a-port"}, "PORT"),
    ],
)
def test_bad_start_up_settings_stop_with_one_clear_line(processes, env, message):
    service = processes.start("bad-start", ["src.services"], env)
    assert service.popen.wait(30) == 2
    lines = service.log().strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def _seconds_until_server_closes_idle_connection(port: int) -> float:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(10)
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = b""
        while not answer.endswith(b'"model_version":"1"}'):  # headers, body may come apart
            chunk = connection.recv(65536)
            assert chunk, f"the server closed before answering in full: {answer!r}"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        assert connection.recv(65536) == b"", "expected the server to close the connection"
        return time.monotonic() - answered


def test_idle_connections_stay_open_for_keep_alive_timeout(processes):
    service = processes.start_http(
        "setosa", ["src.services"], {"MODE": "setosa", "KEEP_ALIVE_TIMEOUT": "2"}
    )
    waited = _seconds_until_server_closes_idle_connection(service.port)
    # uvicorn checks on a timer, so "about 2 s", and far from its own default of 5 s.
    assert 1.5 < waited < 4


def test_servers_outlast_the_proxy_pool_idle_connections_by_default():
    # The client side must hang up first, or a request can meet a closing connection.
    # Field defaults, not ProxySettings(): the test must not depend on the shell's variables.
    proxy_idle = ProxySettings.model_fields["backend_keepalive"].default
    assert proxy_idle < CommonSettings.model_fields["keep_alive_timeout"].default

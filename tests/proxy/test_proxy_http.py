"""The proxy over HTTP: fan-out, aggregation, validation and degraded answers."""

import json
import signal

import httpx
import pytest

from tests.bad_inputs import BAD_BODIES, BAD_BODY_IDS, JSON_HEADERS
from tests.batch_support import wait_for_log
from tests.health import healthy_entry
from tests.stub_servers import JsonStubHandler, stub_http_server
from tooling.processes import CLASSES

SAMPLES = {
    "setosa": [5.1, 3.5, 1.4, 0.2],
    "versicolor": [5.9, 3.0, 4.2, 1.5],
    "virginica": [6.5, 3.0, 5.5, 1.8],
}


def test_health_and_health_all(suite):
    assert httpx.get(suite.proxy.base_url + "/health").json() == {"health": "ok"}
    response = httpx.get(suite.proxy.base_url + "/health/all")
    assert response.status_code == 200
    assert response.json() == {name: healthy_entry(name) for name in CLASSES}


def test_metadata_lists_the_services(suite):
    body = httpx.get(suite.proxy.base_url + "/metadata").json()
    assert set(body["services"]) == set(CLASSES)
    assert body["services"]["setosa"] == suite.services["setosa"].base_url


def test_predict_keys_every_service_answer_by_name(suite):
    rows = list(SAMPLES.values())
    body = httpx.post(suite.proxy.base_url + "/predict", json={"data": rows}).json()
    assert set(body) == set(CLASSES)
    for name in CLASSES:
        direct = httpx.post(suite.services[name].base_url + "/predict", json={"data": rows})
        assert body[name] == direct.json()


def test_predict_label_picks_the_most_probable_class_for_every_row(suite):
    rows = list(SAMPLES.values())
    body = httpx.post(suite.proxy.base_url + "/predict/label", json={"data": rows}).json()
    assert [entry["label"] for entry in body["predictions"]] == list(SAMPLES)
    assert body["prediction"] == body["predictions"][0]
    assert body["unavailable"] == []
    assert all(entry["proba"] > 0.9 for entry in body["predictions"])


def test_test_endpoints_score_the_fixed_sample_at_every_service(suite):
    posted = httpx.post(suite.proxy.base_url + "/predict/post/test").json()
    got = httpx.get(suite.proxy.base_url + "/predict/get/test").json()
    assert posted == got
    assert set(posted) == set(CLASSES)
    assert posted["setosa"]["prediction"][0] > 0.9


@pytest.mark.parametrize(("case", "body", "message"), BAD_BODIES, ids=BAD_BODY_IDS)
@pytest.mark.parametrize("path", ["/predict", "/predict/label"])
def test_bad_input_gets_422_before_any_fan_out(suite, path, case, body, message):
    response = httpx.post(suite.proxy.base_url + path, content=body, headers=JSON_HEADERS)
    assert response.status_code == 422
    assert message in str(response.json())
    request_id = response.headers["X-Request-ID"]
    for service in suite.services.values():
        assert request_id not in service.log()


# Bodies the proxy's fast check declines before FastAPI's own parse would see them.
ODD_REQUESTS = [
    ("no-content-type", b'{"data": [[1, 2, 3, 4]]}', {}),
    ("text-plain", b'{"data": [[1, 2, 3, 4]]}', {"Content-Type": "text/plain"}),
    ("form", b"data=1", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("empty", b"", JSON_HEADERS),
    ("not-utf8", b'{"data": [["\xe9"]]}', JSON_HEADERS),
    ("utf16", '{"data": [[1, 2, 3]]}'.encode("utf-16"), JSON_HEADERS),
    ("too-many-rows", b'{"data": [' + b",".join([b"[1, 2, 3, 4]"] * 10_001) + b"]}", JSON_HEADERS),
    *((case, body.encode(), JSON_HEADERS) for case, body, _ in BAD_BODIES),
]


@pytest.mark.parametrize(
    ("case", "body", "headers"), ODD_REQUESTS, ids=[case[0] for case in ODD_REQUESTS]
)
def test_a_bad_body_gets_the_same_answer_from_the_proxy_as_from_a_service(
    suite, case, body, headers
):
    # The proxy reads its body itself (src/schemas.py, rows_body); a service leaves it to
    # FastAPI. Whatever is wrong, both must answer alike.
    proxied = httpx.post(suite.proxy.base_url + "/predict/label", content=body, headers=headers)
    direct = httpx.post(
        suite.services["setosa"].base_url + "/predict", content=body, headers=headers
    )
    assert proxied.status_code == direct.status_code
    assert proxied.status_code in (400, 422)
    assert proxied.json() == direct.json()


class _RecordingHandler(JsonStubHandler):
    """A class service that records the bodies it receives and gives every row P = 0.5."""

    protocol_version = "HTTP/1.1"
    received: list[bytes] = []

    def do_POST(self):  # noqa: N802 (the stdlib's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(body)
        rows = len(json.loads(body)["data"])
        answer = json.dumps({"prediction": [0.5, 0.5], "predictions": [[0.5, 0.5]] * rows})
        self.send_json(answer.encode())


@pytest.mark.parametrize(
    "body",
    [
        b'{ "data" : [ [5, 3.5, 1.4, 0.2],\n[6.5,3.0,5.5,1.8e0] ] }',
        b'{"\\u0064ata": [[5, 3.5, 1.4, 0.2], [6.5, 3, 5.5, 1.8]]}',
        # Valid, though the fast check declines them: FastAPI's parse and the schema decide.
        b'{"data": [[100000000000000000000, 3.5, 1.4, 0.2], [6.5, 3, 5.5, 1.8]]}',
        b'{"data": [[1, 2, 3, 4]], "data": [[5, 3.5, 1.4, 0.2], [6.5, 3, 5.5, 1.8]]}',
    ],
    ids=["spacing", "escaped-key", "beyond-int64", "repeated-key"],
)
def test_a_valid_body_reaches_the_services_byte_for_byte(processes, body):
    _RecordingHandler.received = []
    with stub_http_server(_RecordingHandler) as url:
        proxy = processes.start_http("proxy", ["src.proxy"], {"SERVICE_ONE": url})
        answer = httpx.post(proxy.base_url + "/predict/label", content=body, headers=JSON_HEADERS)
        keyed = httpx.post(proxy.base_url + "/predict", content=body, headers=JSON_HEADERS)
    assert answer.status_code == 200
    assert answer.json()["predictions"] == [{"proba": 0.5, "label": "one"}] * 2
    assert keyed.json() == {"one": {"prediction": [0.5, 0.5], "predictions": [[0.5, 0.5]] * 2}}
    assert _RecordingHandler.received == [body, body]


def test_more_than_max_rows_is_422(suite):
    response = httpx.post(
        suite.proxy.base_url + "/predict/label", json={"data": [[1, 2, 3, 4]] * 10_001}
    )
    assert response.status_code == 422
    assert "at most 10000 rows" in response.json()["error"]


def test_request_id_reaches_every_service_and_comes_back(suite):
    response = httpx.post(
        suite.proxy.base_url + "/predict/label",
        json={"data": [SAMPLES["setosa"]]},
        headers={"X-Request-ID": "follow-me-7"},
    )
    assert response.headers["X-Request-ID"] == "follow-me-7"
    # Each process logs its access line once the response is sent: it may trail the answer.
    for service in suite.services.values():
        wait_for_log(service, "[follow-me-7] POST /predict 200", timeout=10)
    wait_for_log(suite.proxy, "[follow-me-7] POST /predict/label 200", timeout=10)


def test_a_killed_service_degrades_the_answers(own_suite):
    own_suite.services["virginica"].signal(signal.SIGKILL)
    own_suite.services["virginica"].popen.wait(10)
    base = own_suite.proxy.base_url

    predicted = httpx.post(base + "/predict", json={"data": [SAMPLES["setosa"]]})
    assert predicted.status_code == 200
    body = predicted.json()
    assert body["virginica"]["error"] == "unreachable"
    assert body["setosa"]["prediction"][0] > 0.9

    labelled = httpx.post(base + "/predict/label", json={"data": list(SAMPLES.values())})
    assert labelled.status_code == 200
    body = labelled.json()
    assert body["unavailable"] == ["virginica"]
    assert [entry["label"] for entry in body["predictions"][:2]] == ["setosa", "versicolor"]
    assert body["predictions"][2]["label"] in {"setosa", "versicolor"}

    health = httpx.get(base + "/health/all")
    assert health.status_code == 200
    assert health.json()["virginica"]["health"] == "error"
    assert health.json()["setosa"] == healthy_entry("setosa")


def test_a_frozen_service_times_out_instead_of_hanging_the_proxy(own_suite):
    frozen = own_suite.services["versicolor"]
    frozen.signal(signal.SIGSTOP)
    try:
        response = httpx.post(
            own_suite.proxy.base_url + "/predict/label",
            json={"data": [SAMPLES["versicolor"]]},
            timeout=10,
        )
    finally:
        frozen.signal(signal.SIGCONT)
    assert response.status_code == 200
    assert response.json()["unavailable"] == ["versicolor"]
    assert "backend versicolor failed (timeout)" in own_suite.proxy.log()


def test_every_service_down_is_503_json(own_suite):
    for service in own_suite.services.values():
        service.signal(signal.SIGKILL)
        service.popen.wait(10)
    base = own_suite.proxy.base_url
    for path in ["/predict", "/predict/label"]:
        response = httpx.post(base + path, json={"data": [SAMPLES["setosa"]]})
        assert response.status_code == 503
        assert response.json()["error"] == "every service failed"
        assert set(response.json()["services"]) == set(CLASSES)
    assert httpx.get(base + "/health/all").status_code == 503
    assert httpx.post(base + "/predict/post/test").status_code == 503


def test_unknown_routes_and_methods_answer_json(suite):
    missing = httpx.get(suite.proxy.base_url + "/no/such/route")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong_method = httpx.get(suite.proxy.base_url + "/predict/label")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]


class _WrongAnswerHandler(JsonStubHandler):
    """A backend that answers 200 with JSON of the wrong shape."""

    def do_POST(self):  # noqa: N802 (the stdlib's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"unexpected": true}'
        self.send_json(body)


def test_a_service_answering_the_wrong_shape_counts_as_failed(processes):
    with stub_http_server(_WrongAnswerHandler) as wrong_url:
        setosa = processes.start_http("setosa", ["src.services"], {"MODE": "setosa"})
        proxy = processes.start_http(
            "proxy",
            ["src.proxy"],
            {"SERVICE_SETOSA": setosa.base_url, "SERVICE_ODD": wrong_url},
        )
        labelled = httpx.post(proxy.base_url + "/predict/label", json={"data": [SAMPLES["setosa"]]})
        assert labelled.status_code == 200
        assert labelled.json()["unavailable"] == ["odd"]
        assert labelled.json()["prediction"]["label"] == "setosa"
        predicted = httpx.post(proxy.base_url + "/predict", json={"data": [SAMPLES["setosa"]]})
        assert predicted.json()["odd"]["error"] == "bad_response"

"""End to end over HTTP only, so the same tests run against make run, compose or Kubernetes."""

import os
import time

import httpx
import pytest

from tests.bad_inputs import BAD_BODIES, BAD_BODY_IDS, JSON_HEADERS
from tests.health import healthy_entry
from tooling.processes import CLASSES

SAMPLES = {
    "setosa": [5.1, 3.5, 1.4, 0.2],
    "versicolor": [5.9, 3.0, 4.2, 1.5],
    "virginica": [6.5, 3.0, 5.5, 1.8],
}
# A stack under compose scores every BATCH_WAIT_TIME seconds (60 by default).
SCORING_TIMEOUT = float(os.environ.get("SUITE_SCORING_TIMEOUT", "150"))


def test_every_class_service_is_healthy_behind_the_proxy(stack):
    response = httpx.get(stack.proxy_url + "/health/all")
    assert response.status_code == 200
    assert response.json() == {name: healthy_entry(name) for name in CLASSES}


def test_the_proxy_labels_the_classic_samples(stack):
    response = httpx.post(stack.proxy_url + "/predict/label", json={"data": list(SAMPLES.values())})
    body = response.json()
    assert [entry["label"] for entry in body["predictions"]] == list(SAMPLES)
    assert body["unavailable"] == []


@pytest.mark.parametrize(("case", "body", "message"), BAD_BODIES, ids=BAD_BODY_IDS)
@pytest.mark.parametrize("which", ["proxy", "api"])
def test_bad_input_is_422_at_proxy_and_api(stack, which, case, body, message):
    base = stack.proxy_url if which == "proxy" else stack.api_url
    response = httpx.post(base + "/predict", content=body, headers=JSON_HEADERS)
    assert response.status_code == 422
    assert message in str(response.json())


def test_batch_register_then_scored_by_the_job(stack):
    registered = httpx.post(stack.api_url + "/predict", json={"data": list(SAMPLES.values())})
    assert registered.status_code == 200
    ids = registered.json()["ids"]
    assert len(ids) == 3 and registered.json()["id"] == ids[0]

    deadline = time.monotonic() + SCORING_TIMEOUT
    answers = {}
    while len(answers) < len(ids):
        assert time.monotonic() < deadline, f"not scored after {SCORING_TIMEOUT}s: {answers}"
        for item_id in ids:
            body = httpx.get(f"{stack.api_url}/predict/id/{item_id}").json()
            if body["prediction"] is not None:
                answers[item_id] = body
        time.sleep(0.5)

    for item_id, expected in zip(ids, SAMPLES, strict=True):
        answer = answers[item_id]
        assert answer["label"] == expected
        assert sum(answer["prediction"].values()) == pytest.approx(1.0, abs=1e-5)


def test_unknown_id_is_404(stack):
    response = httpx.get(stack.api_url + "/predict/id/987654321")
    assert response.status_code == 404
    assert "987654321" in response.json()["error"]

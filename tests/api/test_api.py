"""The batch API as a real process, on SQLite and on a MySQL-compatible server."""

import math

import pytest

from tests.batch_support import CLASSIC_SAMPLES, job_env, run_job_once

ROW = [5.1, 3.5, 1.4, 0.2]


def _register(api, rows: list[list[float]]) -> list[int]:
    response = api.client.post("/predict", json={"data": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == body["ids"][0]
    assert len(body["ids"]) == len(rows)
    return body["ids"]


def test_registered_items_are_null_until_the_job_scores_them(api, processes):
    item_ids = _register(api, [row for row, _ in CLASSIC_SAMPLES])
    for item_id in item_ids:
        assert api.client.get(f"/predict/id/{item_id}").json() == {
            "id": item_id,
            "prediction": None,
            "model_version": None,
        }

    run_job_once(processes, job_env(api.database_url))

    for item_id, (_, label) in zip(item_ids, CLASSIC_SAMPLES, strict=True):
        body = api.client.get(f"/predict/id/{item_id}").json()
        assert body["id"] == item_id
        assert set(body["prediction"]) == {"setosa", "versicolor", "virginica"}
        assert math.isclose(sum(body["prediction"].values()), 1, abs_tol=1e-5)
        assert body["label"] == label
        assert max(body["prediction"], key=body["prediction"].get) == label
    predicted = api.client.get("/data/predicted", params={"after_id": item_ids[0] - 1}).json()
    assert [item["id"] for item in predicted["items"]] == item_ids
    assert [item["label"] for item in predicted["items"]] == [label for _, label in CLASSIC_SAMPLES]


def test_unknown_id_is_a_json_404(api):
    response = api.client.get("/predict/id/987654321")
    assert response.status_code == 404
    assert "987654321" in response.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"data": []},
        {"data": [[5.1, 3.5, 1.4]]},
        {"data": [[5.1, 3.5, 1.4, 0.2, 9.9]]},
        {"data": [ROW, ["5.1", 3.5, 1.4, 0.2]]},
        {"data": [ROW, [True, 3.5, 1.4, 0.2]]},
        {"data": [ROW, [None, 3.5, 1.4, 0.2]]},
        {"rows": [ROW]},
        {"data": [ROW], "extra": 1},
    ],
    ids=["empty", "3-values", "5-values", "string", "bool", "null", "no-data", "extra-field"],
)
def test_bad_input_is_rejected_and_nothing_is_stored(api, body):
    before = api.count_items()
    response = api.client.post("/predict", json=body)
    assert response.status_code == 422
    assert "error" in response.json()
    assert api.count_items() == before


def test_non_finite_numbers_are_rejected(api):
    before = api.count_items()
    # json= would refuse NaN, so the body is written by hand as Python's parser accepts it.
    for literal in ("NaN", "Infinity", "-Infinity"):
        response = api.client.post(
            "/predict",
            content=f'{{"data": [[5.1, 3.5, 1.4, {literal}]]}}',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 422, literal
    assert api.count_items() == before


def test_more_rows_than_max_rows_is_rejected_and_nothing_is_stored(api):
    before = api.count_items()
    response = api.client.post("/predict", json={"data": [ROW] * 10_001})
    assert response.status_code == 422
    assert "10000" in response.json()["error"]
    assert api.count_items() == before


def test_ten_thousand_rows_are_stored_in_one_post(api):
    before = api.count_items()
    item_ids = _register(api, [[1.0, 2.0, 3.0, float(index)] for index in range(10_000)])
    assert item_ids == list(range(item_ids[0], item_ids[0] + 10_000))
    assert api.count_items() == before + 10_000
    last = api.client.get("/data/all", params={"after_id": item_ids[-1] - 1}).json()
    assert last["items"][0]["data"] == [1.0, 2.0, 3.0, 9999.0]


def test_pages_walk_every_item_once_by_cursor(api):
    item_ids = _register(api, [ROW] * 250)
    seen = []
    after_id = item_ids[0] - 1
    while after_id is not None:
        page = api.client.get("/data/unpredicted", params={"after_id": after_id}).json()
        assert len(page["items"]) <= 100
        seen.extend(item["id"] for item in page["items"])
        after_id = page["next"]
    assert seen[:250] == item_ids


def test_pages_default_to_100_and_stop_at_1000(api):
    _register(api, [ROW] * 120)
    assert len(api.client.get("/data/all").json()["items"]) == 100
    assert api.client.get("/data/all", params={"limit": 1000}).status_code == 200
    for params in ({"limit": 1001}, {"limit": 0}, {"offset": -1}, {"after_id": "x"}):
        response = api.client.get("/data/all", params=params)
        assert response.status_code == 422, params
        assert "error" in response.json()


def test_offset_skips_items_after_the_cursor(api):
    item_ids = _register(api, [ROW] * 10)
    page = api.client.get(
        "/data/all", params={"after_id": item_ids[0] - 1, "offset": 3, "limit": 2}
    ).json()
    assert [item["id"] for item in page["items"]] == item_ids[3:5]
    assert page["next"] == item_ids[4]


def test_offset_is_bounded_and_after_id_goes_further(api):
    item_ids = _register(api, [ROW] * 3)
    assert api.client.get("/data/all", params={"offset": 10_000}).status_code == 200
    # A property-based fuzz once got a 500 from offset=6221887261967711731712.
    for offset in (10_001, 6221887261967711731712):
        response = api.client.get("/data/predicted", params={"offset": offset})
        assert response.status_code == 422, offset
        assert "offset" in response.json()["error"]
    page = api.client.get("/data/unpredicted", params={"after_id": item_ids[1]}).json()
    assert [item["id"] for item in page["items"]][:1] == [item_ids[2]]


def test_health_and_metadata(api):
    assert api.client.get("/health").json() == {"health": "ok"}
    metadata = api.client.get("/metadata").json()
    assert metadata["labels"] == ["setosa", "versicolor", "virginica"]
    assert metadata["data_structure"] == "(N, 4)"
    assert metadata["page_size"] == {"default": 100, "max": 1000}
    # The repository's newest iris version, the job's model with the same settings.
    assert metadata["model_name"] == "iris"
    assert metadata["model_version"] == "1"
    assert metadata["model_filepath"] == "models/iris/1/model.onnx"


def _registered_counter(api) -> float:
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith("api_items_registered_total "):
            return float(line.split()[1])
    raise AssertionError("api_items_registered_total not on /metrics")


def test_metrics_count_registered_items_and_requests(api):
    before = _registered_counter(api)
    _register(api, [ROW] * 7)
    assert _registered_counter(api) == before + 7
    metrics = api.client.get("/metrics").text
    assert 'http_requests_total{method="POST",route="/predict",status="200"}' in metrics


def test_request_id_is_echoed(api):
    response = api.client.get("/health", headers={"X-Request-ID": "batch-test-1"})
    assert response.headers["X-Request-ID"] == "batch-test-1"

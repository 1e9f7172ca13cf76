"""Batch lineage through the API: every prediction names the model version that made it,
null until scored, and moves to the new version once a rescoring run has passed."""

import httpx
import pytest

from src.ml.predictor import Predictor
from src.ml.repository import ModelRepository
from tests.batch_support import CLASSIC_SAMPLES, job_env, ready_engine, run_job_once, sqlite_url

ROWS = [row for row, _ in CLASSIC_SAMPLES]


def _versions_everywhere(api, item_ids: list[int], submission_id: int) -> dict[str, list]:
    """Each item's model_version as /predict/id, /data/all and /submissions/<id> give it."""
    client = api.client
    page = client.get("/data/all", params={"after_id": item_ids[0] - 1, "limit": len(item_ids)})
    submission = client.get(f"/submissions/{submission_id}").json()
    return {
        "predict_id": [client.get(f"/predict/id/{i}").json()["model_version"] for i in item_ids],
        "data_all": [item["model_version"] for item in page.json()["items"]],
        "submission": [item["model_version"] for item in submission["items"]],
    }


def test_predictions_name_their_version_and_move_to_the_new_one_after_rescoring(
    api, processes, iris_v2_repository
):
    posted = api.client.post("/predict", json={"data": ROWS}).json()
    item_ids, submission_id = posted["ids"], posted["submission_id"]
    unscored = [None] * len(ROWS)
    assert _versions_everywhere(api, item_ids, submission_id) == {
        "predict_id": unscored,
        "data_all": unscored,
        "submission": unscored,
    }

    run_job_once(processes, job_env(api.database_url))
    version_1 = ["1"] * len(ROWS)
    assert _versions_everywhere(api, item_ids, submission_id) == {
        "predict_id": version_1,
        "data_all": version_1,
        "submission": version_1,
    }
    predicted = api.client.get("/data/predicted", params={"after_id": item_ids[0] - 1}).json()
    assert [item["model_version"] for item in predicted["items"]][: len(ROWS)] == version_1

    rescore_env = job_env(api.database_url, MODEL_REPOSITORY=iris_v2_repository)
    run_job_once(processes, rescore_env, args=["--rescore"])
    version_2 = ["2"] * len(ROWS)
    assert _versions_everywhere(api, item_ids, submission_id) == {
        "predict_id": version_2,
        "data_all": version_2,
        "submission": version_2,
    }
    # What /predict/id answers is version 2's prediction, not version 1's.
    repository = ModelRepository(iris_v2_repository)
    new, old = (
        Predictor(repository.model_path("iris", version)).load().predict_proba(ROWS)
        for version in (2, 1)
    )
    for item_id, expected, previous, (_, label) in zip(
        item_ids, new, old, CLASSIC_SAMPLES, strict=True
    ):
        body = api.client.get(f"/predict/id/{item_id}").json()
        assert list(body["prediction"].values()) == pytest.approx(expected.tolist(), abs=1e-12)
        assert list(body["prediction"].values()) != pytest.approx(previous.tolist(), abs=1e-6)
        assert body["label"] == label


def test_the_api_reads_the_newest_or_the_pinned_version(processes, iris_v2_repository, tmp_path):
    url = sqlite_url(tmp_path)
    ready_engine(url).dispose()
    env = {"DATABASE_URL": url, "MODEL_REPOSITORY": str(iris_v2_repository)}
    newest = processes.start_http("api-newest", ["src.api"], env)
    assert httpx.get(newest.base_url + "/metadata").json()["model_version"] == "2"
    pinned = processes.start_http("api-pinned", ["src.api"], {**env, "MODEL_VERSION": "1"})
    assert httpx.get(pinned.base_url + "/metadata").json()["model_version"] == "1"
    absent = processes.start("api-absent", ["src.api"], {**env, "MODEL_VERSION": "9"})
    assert absent.popen.wait(30) == 2
    expected = f"api: cannot start: model repository {iris_v2_repository}: 'iris' has no version 9"
    assert expected in absent.log()
    assert "Traceback" not in absent.log()

"""The batch API and job serve any classifier by configuration: the wine model set
(13 numbers per row, 3 classes), as real processes on SQLite and MySQL."""

import json
import math

import httpx
import numpy as np
import pytest
from sklearn import datasets

from src.ml.predictor import Predictor
from tests.batch_support import job_env, ready_engine, run_job_once
from tooling.processes import free_port

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def _wine_env(wine_models, database_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "MODEL_FILEPATH": str(wine_models / "wine" / "1" / "model.onnx"),
        "LABEL_FILEPATH": str(wine_models / "label.json"),
    }


def _wine_rows() -> list[list[float]]:
    """The first sample of each wine class, and one with every number at full precision."""
    features, target = datasets.load_wine(return_X_y=True)
    firsts = [features[np.argmax(target == label)].tolist() for label in range(3)]
    return [*firsts, (features[100] + 1 / 3).tolist()]


def test_wine_rows_are_stored_scored_and_served_with_the_wine_classes(
    wine_models, database_url, processes
):
    ready_engine(database_url).dispose()
    env = _wine_env(wine_models, database_url)
    api = processes.start_http("api", ["src.api"], env)
    client = httpx.Client(base_url=api.base_url, timeout=30)
    metadata = client.get("/metadata").json()
    assert metadata["data_structure"] == "(N, 13)"
    assert metadata["data_sample"] == [json.loads((wine_models / "sample.json").read_text())]
    assert metadata["labels"] == ["class_0", "class_1", "class_2"]
    assert metadata["prediction_structure"].startswith("(N, 3)")
    schema = client.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]
    assert json.dumps(schema).count('"minItems": 13') == 1

    refused = client.post("/predict", json={"data": [IRIS_ROW]})
    assert refused.status_code == 422
    assert "13" in refused.json()["error"]

    rows = _wine_rows()
    registered = client.post("/predict", json={"data": rows}).json()
    assert client.get(f"/predict/id/{registered['id']}").json()["prediction"] is None
    run_job_once(processes, {**job_env(database_url), **env})

    expected = (
        Predictor(wine_models / "wine" / "1" / "model.onnx").load().predict_proba(np.array(rows))
    )
    labels = ["class_0", "class_1", "class_2"]
    for item_id, row, probabilities in zip(registered["ids"], rows, expected, strict=True):
        body = client.get(f"/predict/id/{item_id}").json()
        assert list(body["prediction"]) == labels
        assert list(body["prediction"].values()) == pytest.approx(probabilities.tolist())
        assert math.isclose(sum(body["prediction"].values()), 1, abs_tol=1e-5)
        assert body["label"] == labels[int(np.argmax(probabilities))]
        # The numbers come back exactly as sent, 17 digits included.
        (item,) = client.get("/data/all", params={"after_id": item_id - 1, "limit": 1}).json()[
            "items"
        ]
        assert item["data"] == row
    # The first sample of each class is scored as its class.
    assert [client.get(f"/predict/id/{i}").json()["label"] for i in registered["ids"][:3]] == (
        labels
    )
    status = client.get(f"/submissions/{registered['submission_id']}").json()
    assert status["pending"] == 0
    assert [item["label"] for item in status["items"][:3]] == labels
    client.close()

    # The database is now a wine database: the iris model is refused, by the API and the job.
    for name, module_args, process_env in (
        ("iris-api", ["src.api"], {"DATABASE_URL": database_url}),
        ("iris-job", ["src.task", "--once"], job_env(database_url)),
    ):
        process = processes.start(name, module_args, process_env, port=free_port())
        assert process.popen.wait(60) == 2, process.log()
        process_name = "api" if name == "iris-api" else "job"
        assert (
            f"{process_name}: cannot start: the database holds rows of 13 numbers scored into "
            "3 classes; model models/iris/1/model.onnx takes 4 and gives 3: "
            "use a database of its own"
        ) in process.log()
        assert "Traceback" not in process.log()


@pytest.mark.parametrize("process_name", ["api", "job"])
def test_a_label_file_of_another_class_count_stops_start_up_with_one_line(
    process_name, tmp_path, processes
):
    labels = tmp_path / "label.json"
    labels.write_text(json.dumps({"0": "red", "1": "white"}))
    database_url = f"sqlite:///{tmp_path / 'batch.sqlite3'}"
    ready_engine(database_url).dispose()
    env = {**job_env(database_url), "LABEL_FILEPATH": str(labels)}
    module_args = ["src.api"] if process_name == "api" else ["src.task", "--once"]
    process = processes.start(process_name, module_args, env, port=free_port())
    assert process.popen.wait(60) == 2, process.log()
    line = (
        f"{process_name}: cannot start: model models/iris/1/model.onnx: output 'probabilities' "
        f"gives 3 probabilities per row; label file {labels} needs 2"
    )
    assert line in process.log().splitlines(), process.log()
    assert "Traceback" not in process.log()

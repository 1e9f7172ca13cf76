"""Model versions: the repository API through tritonclient, tokens, and a rollout under load.

Each test serves a copy of the committed repository (models/) from a temporary folder,
so new versions can be added without touching the tree.
"""

import shutil

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.metrics import metric_value
from tooling.load import Load
from tooling.processes import REPO_ROOT, start_horizontal_suite

TOKEN = "operator-secret-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROW = [5.1, 3.5, 1.4, 0.2]


def copy_repository(folder):
    shutil.copytree(REPO_ROOT / "models", folder)
    return folder


def add_version(repository, model: str, version: int, source: str | None = None) -> None:
    """Version `version` of `model`: a copy of another model's file, or junk when None."""
    target = repository / model / str(version)
    target.mkdir(parents=True)
    if source is None:
        (target / "model.onnx").write_bytes(b"not an onnx model")
    else:
        shutil.copy(repository / source / "1" / "model.onnx", target / "model.onnx")


@pytest.fixture
def versioned_service(processes, tmp_path):
    repository = copy_repository(tmp_path / "models")
    env = {"MODE": "setosa", "MODEL_REPOSITORY": str(repository), "ADMIN_TOKEN": TOKEN}
    return processes.start_http("setosa", ["src.services"], env), repository


def test_tritonclient_index_load_unload_and_version_routes(versioned_service):
    service, repository = versioned_service
    client = triton.InferenceServerClient(service.base_url.removeprefix("http://"))
    try:
        assert client.get_model_repository_index(headers=AUTH) == [
            {"name": "setosa", "version": "1", "state": "READY", "reason": ""}
        ]
        tensor = triton.InferInput("input", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.array([ROW], dtype=np.float32))
        assert client.infer("setosa", [tensor]).get_response()["model_version"] == "1"

        add_version(repository, "setosa", 2, source="virginica")
        client.load_model("setosa", headers=AUTH)
        assert client.get_model_metadata("setosa")["versions"] == ["2"]
        assert client.get_model_metadata("setosa", model_version="2")["name"] == "setosa"
        assert client.is_model_ready("setosa", model_version="2")
        answer = client.infer("setosa", [tensor], model_version="2").get_response()
        assert answer["model_version"] == "2"
        with pytest.raises(InferenceServerException, match="version '1' of 'setosa' is not served"):
            client.infer("setosa", [tensor], model_version="1")
        index = client.get_model_repository_index(headers=AUTH)
        assert [(entry["version"], entry["state"]) for entry in index] == [
            ("1", "UNAVAILABLE"),
            ("2", "READY"),
        ]
        seed = httpx.post(service.base_url + "/predict", json={"data": [ROW]}).json()
        assert seed["model_version"] == "2"
        assert metric_value(service.base_url, "served_model_info", model="setosa", version="2") == 1
        assert metric_value(service.base_url, "served_model_info", model="setosa", version="1") == 0

        client.unload_model("setosa", headers=AUTH)
        assert not client.is_model_ready("setosa")
        refused = httpx.post(service.base_url + "/predict", json={"data": [ROW]})
        assert refused.status_code == 503 and "unloaded" in refused.json()["error"]
        client.load_model("setosa", headers=AUTH)
        assert client.is_model_ready("setosa")
    finally:
        client.close()


def test_a_broken_version_leaves_the_old_one_serving(versioned_service):
    service, repository = versioned_service
    add_version(repository, "setosa", 2)  # not an ONNX file
    load = httpx.post(service.base_url + "/v2/repository/models/setosa/load", headers=AUTH)
    assert load.status_code == 400
    assert load.json()["error"].startswith("not loaded: cannot load ")
    assert "setosa/2/model.onnx" in load.json()["error"]
    answer = httpx.post(service.base_url + "/predict", json={"data": [ROW]}).json()
    assert answer["model_version"] == "1"


def test_a_version_of_another_width_is_refused(versioned_service, wine_models):
    service, repository = versioned_service
    target = repository / "setosa" / "2"
    target.mkdir()
    shutil.copy(wine_models / "class_0" / "1" / "model.onnx", target / "model.onnx")
    load = httpx.post(service.base_url + "/v2/repository/models/setosa/load", headers=AUTH)
    assert load.status_code == 400
    assert "takes rows of 13 numbers; this service serves rows of 4 numbers" in load.json()["error"]
    assert (
        httpx.post(service.base_url + "/predict", json={"data": [ROW]}).json()["model_version"]
        == "1"
    )


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer"}, {"Authorization": TOKEN}],
    ids=["missing", "wrong", "empty", "not-bearer"],
)
def test_repository_routes_refuse_a_missing_wrong_or_empty_token(versioned_service, headers):
    service, _ = versioned_service
    for path in ("/v2/repository/index", "/v2/repository/models/setosa/load"):
        response = httpx.post(service.base_url + path, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "ADMIN_TOKEN" in response.json()["error"]
    assert "refused POST /v2/repository/index" in service.log()
    assert TOKEN not in service.log()


def test_repository_routes_are_absent_without_a_token(processes):
    service = processes.start_http("setosa", ["src.services"], {"MODE": "setosa"})
    response = httpx.post(service.base_url + "/v2/repository/index", headers=AUTH)
    assert response.status_code == 404
    document = httpx.get(service.base_url + "/openapi.json").json()
    assert not any(path.startswith("/v2/repository") for path in document["paths"])


def test_a_new_version_rolls_out_under_load_with_nothing_dropped(processes, tmp_path):
    """c=32 against the proxy while setosa gets version 2 through the proxy's repository API."""
    repository = copy_repository(tmp_path / "models")
    suite = start_horizontal_suite(
        processes,
        {"ADMIN_TOKEN": TOKEN},
        service_env=lambda name: {"MODEL_REPOSITORY": str(repository), "ADMIN_TOKEN": TOKEN},
    )
    proxy = suite.proxy.base_url
    degraded_before = metric_value(proxy, "proxy_degraded_answers_total", answer="label")
    with Load(proxy, 32) as load:
        load.wait_for_requests(300)
        add_version(repository, "setosa", 2, source="setosa")
        rollout = httpx.post(proxy + "/v2/repository/models/setosa/load", headers=AUTH, timeout=60)
        assert rollout.status_code == 200, rollout.text
        assert list(rollout.json()["replicas"].values()) == [{"name": "setosa", "version": "2"}]
        load.expect_version("setosa", "2")
        after_load = load.counts().total
        load.wait_for_requests(after_load + 300)

        add_version(repository, "setosa", 3)  # broken: the load fails, version 2 serves on
        broken = httpx.post(proxy + "/v2/repository/models/setosa/load", headers=AUTH, timeout=60)
        assert broken.status_code == 400 and "not loaded" in broken.text
        load.wait_for_requests(load.counts().total + 200)
        counts = load.stop()
    assert counts.failed == 0 and counts.degraded == 0, counts.problems
    assert counts.stale == 0, counts.problems
    assert counts.total >= after_load + 500
    degraded_after = metric_value(proxy, "proxy_degraded_answers_total", answer="label")
    assert degraded_after == degraded_before
    answer = httpx.post(proxy + "/predict/label", json={"data": [ROW]}).json()
    assert answer["model_versions"] == {"setosa": "2", "versicolor": "1", "virginica": "1"}


def test_the_proxy_routes_version_paths_and_refuses_them_for_the_ensemble(suite):
    proxy = suite.proxy.base_url
    assert httpx.get(proxy + "/v2/models/setosa/versions/1").json()["versions"] == ["1"]
    missing = httpx.get(proxy + "/v2/models/setosa/versions/7")
    assert missing.status_code == 404 and "version '7'" in missing.json()["error"]
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROW}]}
    answer = httpx.post(proxy + "/v2/models/virginica/versions/1/infer", json=body).json()
    assert answer["model_version"] == "1"
    ensemble = httpx.post(proxy + "/v2/models/iris/infer", json=body).json()
    assert ensemble["parameters"]["model_versions"] == {
        "setosa": "1",
        "versicolor": "1",
        "virginica": "1",
    }
    assert httpx.get(proxy + "/v2/models/iris/versions/1").status_code == 404
    # The repository routes are off without ADMIN_TOKEN, on the proxy too.
    assert httpx.post(proxy + "/v2/repository/index").status_code == 404


def test_the_proxy_loads_a_version_on_every_replica_of_a_service(processes, tmp_path):
    repositories = [copy_repository(tmp_path / f"replica-{index}") for index in range(2)]
    replicas = [
        processes.start_http(
            f"setosa-{index}",
            ["src.services"],
            {"MODE": "setosa", "MODEL_REPOSITORY": str(repository), "ADMIN_TOKEN": TOKEN},
        )
        for index, repository in enumerate(repositories)
    ]
    proxy = processes.start_http(
        "proxy",
        ["src.proxy"],
        {
            "SERVICE_SETOSA": ",".join(replica.base_url for replica in replicas),
            "ADMIN_TOKEN": TOKEN,
        },
    )
    for repository in repositories:
        add_version(repository, "setosa", 2, source="setosa")
    loaded = httpx.post(proxy.base_url + "/v2/repository/models/setosa/load", headers=AUTH)
    assert loaded.status_code == 200, loaded.text
    assert sorted(loaded.json()["replicas"]) == sorted(
        f"127.0.0.1:{replica.port}" for replica in replicas
    )
    for replica in replicas:
        answer = httpx.post(replica.base_url + "/predict", json={"data": [ROW]}).json()
        assert answer["model_version"] == "2"
    index = httpx.post(proxy.base_url + "/v2/repository/index", headers=AUTH).json()
    assert sorted(
        (entry["replica"], entry["version"], entry["state"]) for entry in index
    ) == sorted(
        (f"127.0.0.1:{replica.port}", version, state)
        for replica in replicas
        for version, state in (("1", "UNAVAILABLE"), ("2", "READY"))
    )
    # One replica without the new version: the call names it; the other serves version 2.
    add_version(repositories[0], "setosa", 3, source="setosa")
    partial = httpx.post(proxy.base_url + "/v2/repository/models/setosa/load", headers=AUTH)
    assert partial.status_code == 200  # each replica loads its newest: 3 and 2
    versions = {address: body["version"] for address, body in partial.json()["replicas"].items()}
    assert sorted(versions.values()) == ["2", "3"]
    refused = httpx.post(
        proxy.base_url + "/v2/repository/models/setosa/load",
        headers={"Authorization": "Bearer nope"},
    )
    assert refused.status_code == 401

"""Idempotency keys, submissions and MAX_BACKLOG: real API processes over HTTP, on SQLite and
on a MySQL-compatible server, with two API processes on one database where it matters."""

import socket
import threading
import time
from contextlib import suppress

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from src.db import queries
from src.db.tables import predictions
from src.ml.predictor import Predictor
from src.task.job import ChunkCursor, JobModel, score_next_chunk
from tests.batch_support import (
    REPO_ROOT,
    count_items,
    count_predictions,
    job_env,
    ready_engine,
    run_job_once,
)
from tooling.processes import ProcessStarter, RunningProcess

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


def _rows(count: int, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).uniform(0.1, 8, size=(count, 4)).round(3).tolist()


def _start_apis(processes: ProcessStarter, database_url: str, count: int = 1, **env):
    ready_engine(database_url).dispose()
    settings = {"DATABASE_URL": database_url, **{key: str(value) for key, value in env.items()}}
    return [processes.start_http(f"api-{index}", ["src.api"], settings) for index in range(count)]


def _post(api: RunningProcess, rows, key: str | None = None, timeout: float = 60):
    headers = {KEY_HEADER: key} if key is not None else {}
    return httpx.post(
        api.base_url + "/predict", json={"data": rows}, headers=headers, timeout=timeout
    )


def _scored_once(engine, item_ids: list[int]) -> bool:
    with engine.connect() as connection:
        rows, distinct = connection.execute(
            select(func.count(), func.count(predictions.c.item_id.distinct())).where(
                predictions.c.item_id.in_(item_ids)
            )
        ).one()
    return rows == distinct == len(item_ids)


class AnswerDroppingRelay:
    """Forwards requests to a server, then cuts the client off when the answer starts.

    It stands for a proxy or network that gives up after the server committed: the
    client sees a dropped connection and cannot know whether its rows were stored.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.dropped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", self.target_port))

        def forward_request() -> None:
            with suppress(OSError):
                while data := client.recv(65536):
                    server.sendall(data)

        threading.Thread(target=forward_request, daemon=True).start()
        with suppress(OSError):
            server.recv(1)  # the answer has begun: the server has committed
        self.dropped.set()
        for sock in (client, server):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_a_retry_after_a_lost_answer_returns_the_same_ids_stored_and_scored_once(
    database_url, processes
):
    first_api, second_api = _start_apis(processes, database_url, count=2)
    engine = ready_engine(database_url)
    rows = _rows(500)
    relay = AnswerDroppingRelay(first_api.port)
    try:
        with pytest.raises(httpx.TransportError):
            httpx.post(
                f"http://127.0.0.1:{relay.port}/predict",
                json={"data": rows},
                headers={KEY_HEADER: "retry-after-lost-answer"},
                timeout=30,
            )
        assert relay.dropped.is_set()
    finally:
        relay.close()
    assert count_items(engine) == 500  # committed, although the client never knew

    # The client retries on the other replica, as a load balancer may send it.
    retry = _post(second_api, rows, "retry-after-lost-answer")
    assert retry.status_code == 200, retry.text
    assert retry.headers[REPLAYED_HEADER] == "true"
    body = retry.json()
    assert body["ids"] == list(range(body["submission_id"], body["submission_id"] + 500))
    stored = queries.list_items(engine, "all", limit=1000)
    assert [row.id for row in stored] == body["ids"]
    # And once more on the first replica: the same answer again.
    assert _post(first_api, rows, "retry-after-lost-answer").json() == body
    assert count_items(engine) == 500

    run_job_once(processes, job_env(database_url))
    assert count_predictions(engine) == 500
    assert _scored_once(engine, body["ids"])


def test_twenty_concurrent_requests_with_one_key_on_two_replicas_store_once(
    database_url, processes
):
    apis = _start_apis(processes, database_url, count=2)
    engine = ready_engine(database_url)
    rows = _rows(200, seed=1)
    barrier = threading.Barrier(20)
    responses: list[httpx.Response] = []
    errors: list[BaseException] = []

    def send(api: RunningProcess) -> None:
        barrier.wait()
        try:
            responses.append(_post(api, rows, "twenty-at-once"))
        except BaseException as error:  # collected: an exception in a thread would be lost
            errors.append(error)

    threads = [threading.Thread(target=send, args=(apis[index % 2],)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [response.status_code for response in responses] == [200] * 20, [
        response.text for response in responses if response.status_code != 200
    ]
    answers = {tuple(response.json()["ids"]) for response in responses}
    assert len(answers) == 1
    stored_by = [r for r in responses if REPLAYED_HEADER not in r.headers]
    assert len(stored_by) == 1
    assert count_items(engine) == 200
    assert [row.id for row in queries.list_items(engine, "all", limit=1000)] == list(answers.pop())


def test_the_same_key_with_another_body_is_a_422_naming_the_key(database_url, processes):
    (api,) = _start_apis(processes, database_url)
    engine = ready_engine(database_url)
    first = _post(api, _rows(3), "key-for-three-rows")
    assert first.status_code == 200
    for other in (_rows(3, seed=9), _rows(4), _rows(3)[:2]):
        response = _post(api, other, "key-for-three-rows")
        assert response.status_code == 422
        assert "key-for-three-rows" in response.json()["error"]
        assert "different body" in response.json()["error"]
    # The same numbers written differently are the same body.
    same = [[int(value) if value.is_integer() else value for value in row] for row in _rows(3)]
    assert _post(api, same, "key-for-three-rows").json() == first.json()
    assert count_items(engine) == 3


@pytest.mark.parametrize(
    "key", ["", "x" * 256, "naïve", "two words"], ids=["empty", "256-chars", "non-ascii", "space"]
)
def test_a_malformed_key_is_a_422_naming_the_header(database_url, processes, key):
    (api,) = _start_apis(processes, database_url)
    response = httpx.post(
        api.base_url + "/predict",
        json={"data": _rows(1)},
        headers={KEY_HEADER: key.encode()},
    )
    assert response.status_code == 422
    assert KEY_HEADER in response.json()["error"]
    assert count_items(ready_engine(database_url)) == 0


def test_an_expired_key_is_a_new_key(database_url, processes):
    (api,) = _start_apis(processes, database_url, IDEMPOTENCY_TTL_SECONDS=2)
    engine = ready_engine(database_url)
    rows = _rows(5)
    first = _post(api, rows, "short-lived").json()
    assert _post(api, rows, "short-lived").json() == first
    # The database's clock counts whole seconds: a key of 2 s lives at least 1 s, at most 3.
    time.sleep(3.1)
    renewed = _post(api, rows, "short-lived")
    assert REPLAYED_HEADER not in renewed.headers
    assert renewed.json()["ids"] != first["ids"]
    assert count_items(engine) == 10
    # Now the key answers with its new ids, and takes another body only once expired again.
    assert _post(api, rows, "short-lived").json() == renewed.json()
    assert _post(api, _rows(2), "short-lived").status_code == 422


def test_without_a_key_every_post_stores_its_rows(database_url, processes):
    (api,) = _start_apis(processes, database_url)
    first, second = (_post(api, _rows(2)).json() for _ in range(2))
    assert first["ids"] != second["ids"]
    assert first["submission_id"] == first["id"] == first["ids"][0]
    assert count_items(ready_engine(database_url)) == 4


def _status(api: RunningProcess, submission_id: int, **params) -> dict:
    response = httpx.get(f"{api.base_url}/submissions/{submission_id}", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _score_chunks(database_url: str, chunks: int, chunk_size: int) -> None:
    """Score `chunks` chunks with the job's own code, as a pass in progress would."""
    engine = ready_engine(database_url)
    path = REPO_ROOT / "models" / "iris" / "1" / "model.onnx"
    model = JobModel("iris", 1, path, Predictor(path).load())
    cursor = ChunkCursor()
    for _ in range(chunks):
        assert score_next_chunk(engine, model, cursor, chunk_size) == chunk_size
    engine.dispose()


def test_a_submission_of_10000_rows_moves_from_pending_to_scored(database_url, processes):
    (api,) = _start_apis(processes, database_url)
    other = _post(api, _rows(7, seed=3)).json()
    posted = _post(api, _rows(10_000)).json()
    submission_id = posted["submission_id"]

    status = _status(api, submission_id, limit=1)
    assert {key: status[key] for key in ("id", "total", "scored", "pending")} == {
        "id": submission_id,
        "total": 10_000,
        "scored": 0,
        "pending": 10_000,
    }
    assert status["completed_at"] is None
    assert status["items"][0]["id"] == posted["ids"][0]
    assert status["items"][0]["prediction"] is None

    # Mid-pass: the other submission's 7 items and 2,993 of these are scored.
    _score_chunks(database_url, chunks=3, chunk_size=1000)
    status = _status(api, submission_id)
    assert (status["scored"], status["pending"], status["completed_at"]) == (2_993, 7_007, None)
    assert _status(api, other["submission_id"])["pending"] == 0

    run_job_once(processes, job_env(database_url))
    status = _status(api, submission_id, limit=1000)
    assert (status["scored"], status["pending"]) == (10_000, 0)
    assert status["completed_at"] >= status["created_at"]

    # Its pages walk its items, and only its items, once each, with their predictions.
    seen, after_id = [], None
    while True:
        params = {"limit": 1000} if after_id is None else {"limit": 1000, "after_id": after_id}
        page = _status(api, submission_id, **params)
        assert all(item["label"] for item in page["items"])
        seen.extend(item["id"] for item in page["items"])
        if page["next"] is None:
            break
        after_id = page["next"]
    assert seen == posted["ids"]


def test_an_unknown_submission_is_a_json_404(database_url, processes):
    (api,) = _start_apis(processes, database_url)
    response = httpx.get(f"{api.base_url}/submissions/424242")
    assert response.status_code == 404
    assert "424242" in response.json()["error"]
    for bad in ("0", "x", str(2**63)):
        assert httpx.get(f"{api.base_url}/submissions/{bad}").status_code == 422, bad


def test_past_max_backlog_a_post_is_a_503_with_retry_after_until_the_job_drains(
    database_url, processes
):
    (api,) = _start_apis(processes, database_url, MAX_BACKLOG=100, BACKLOG_RETRY_AFTER_SECONDS=7)
    engine = ready_engine(database_url)
    accepted = _post(api, _rows(150), "before-the-bound")
    assert accepted.status_code == 200

    for key in (None, "a-new-key"):
        refused = _post(api, _rows(1), key)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "7"
        assert "MAX_BACKLOG" in refused.json()["error"]
    # A retry of a stored request is answered: it stores nothing.
    assert _post(api, _rows(150), "before-the-bound").json() == accepted.json()
    assert count_items(engine) == 150

    run_job_once(processes, job_env(database_url))
    assert _post(api, _rows(1), "a-new-key").status_code == 200
    assert count_items(engine) == 151
    metrics = httpx.get(api.base_url + "/metrics").text
    assert "api_backlog_refusals_total 2.0" in metrics
    assert "api_idempotent_replays_total 1.0" in metrics


def test_the_openapi_document_declares_the_key_the_submission_route_and_retry_after():
    from src.api.app import create_app
    from src.settings import ApiSettings

    document = create_app(ApiSettings()).openapi()
    register = document["paths"]["/predict"]["post"]
    assert any(p["name"] == KEY_HEADER and p["in"] == "header" for p in register["parameters"])
    assert "Retry-After" in register["responses"]["503"]["headers"]
    assert REPLAYED_HEADER in register["responses"]["200"]["headers"]
    assert "submission_id" in document["components"]["schemas"]["RegisteredItems"]["required"]
    status = document["paths"]["/submissions/{submission_id}"]["get"]
    assert {"200", "404", "422", "503"} <= set(status["responses"])

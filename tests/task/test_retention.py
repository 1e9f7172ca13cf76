"""Retention (RETENTION_SECONDS): old scored items go, in short chunks, while the job scores
and the API stores; unscored items and recent ones stay. Real processes, real databases."""

import threading
from datetime import timedelta

import httpx
import numpy as np
from sqlalchemy import insert, select, update

from src.db import queries, retention, submissions
from src.db.engine import write_transaction
from src.db.tables import idempotency_keys, items, predictions
from src.db.tables import submissions as submissions_table
from tests.batch_support import count_items, count_predictions, job_env, ready_engine, wait_for
from tooling.processes import free_port

HOUR = 3600


def _rows(count: int, seed: int = 0) -> list[list[float]]:
    return np.random.default_rng(seed).uniform(0.1, 8, size=(count, 4)).round(3).tolist()


def _backdate(engine, registered: submissions.Registered, seconds: float) -> None:
    """Make a submission (its items, and predictions if any) `seconds` old."""
    first, last = registered.item_ids[0], registered.item_ids[-1]
    with write_transaction(engine) as connection:
        then = queries.database_now(connection) - timedelta(seconds=seconds)
        connection.execute(
            update(items).where(items.c.id.between(first, last)).values(created_at=then)
        )
        connection.execute(
            update(predictions)
            .where(predictions.c.item_id.between(first, last))
            .values(created_at=then)
        )
        connection.execute(
            update(submissions_table)
            .where(submissions_table.c.id == registered.submission_id)
            .values(created_at=then)
        )


def _score(engine, item_ids: list[int]) -> None:
    with write_transaction(engine) as connection:
        queries.insert_predictions(connection, item_ids, np.full((len(item_ids), 3), 1 / 3), 1)


def _submission(engine, count: int, age: float, scored: int = 0, seed: int = 0):
    """A submission of `count` items, the first `scored` of them scored, `age` seconds old."""
    registered = submissions.register(engine, _rows(count, seed))
    if scored:
        _score(engine, registered.item_ids[:scored])
    _backdate(engine, registered, age)
    return registered


def _present(engine, table, column, ids: list[int]) -> int:
    with engine.connect() as connection:
        return len(connection.execute(select(column).where(column.in_(ids))).all())


def test_a_sweep_deletes_old_scored_items_only_and_nothing_by_default(database_url):
    engine = ready_engine(database_url)
    old_done = _submission(engine, 30, age=2 * HOUR, scored=30, seed=1)
    old_half = _submission(engine, 10, age=2 * HOUR, scored=5, seed=2)
    young_done = _submission(engine, 20, age=60, scored=20, seed=3)
    with write_transaction(engine) as connection:
        now = queries.database_now(connection)
        for key, expires_at in (
            ("spent", now - timedelta(seconds=1)),
            ("live", now + timedelta(seconds=HOUR)),
        ):
            connection.execute(
                insert(idempotency_keys).values(
                    key=key,
                    request_hash="0" * 64,
                    submission_id=1,
                    item_count=1,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    # Unset: every item stays; only the expired key goes (it would be treated as new anyway).
    kept = retention.sweep(engine, None)
    assert kept.as_dict() == {
        "items": 0,
        "predictions": 0,
        "submissions": 0,
        "idempotency_keys": 1,
    }
    assert count_items(engine) == 60
    with engine.connect() as connection:
        assert connection.execute(select(idempotency_keys.c.key)).scalars().all() == ["live"]

    # Small chunks: several transactions, and the same result.
    swept = retention.sweep(engine, HOUR, chunk=7)
    assert swept.as_dict() == {
        "items": 35,
        "predictions": 35,
        "submissions": 1,
        "idempotency_keys": 0,
    }
    assert _present(engine, items, items.c.id, old_done.item_ids) == 0
    assert _present(engine, predictions, predictions.c.item_id, old_done.item_ids) == 0
    # The unscored half of an old submission stays, and so does everything young.
    assert _present(engine, items, items.c.id, old_half.item_ids) == 5
    assert queries.count_backlog(engine) == 5
    assert _present(engine, items, items.c.id, young_done.item_ids) == 20
    assert _present(engine, predictions, predictions.c.item_id, young_done.item_ids) == 20
    assert queries.oldest_unscored_age_seconds(engine) >= 2 * HOUR - 5

    # Deleted items still count as scored; a spent submission is gone, not half-empty.
    assert submissions.get_status(engine, old_done.submission_id) is None
    half = submissions.get_status(engine, old_half.submission_id)
    assert (half.total, half.scored, half.pending, half.completed_at) == (10, 5, 5, None)
    _score(engine, old_half.item_ids[5:])
    retention.sweep(engine, HOUR)
    # Its last items were scored just now: the submission is complete, and kept as recent.
    half = submissions.get_status(engine, old_half.submission_id)
    assert (half.total, half.scored, half.pending) == (10, 10, 0)
    assert half.completed_at is not None
    assert count_items(engine) == 20
    young = submissions.get_status(engine, young_done.submission_id)
    assert (young.scored, young.pending) == (20, 0)


def _scrape(port: int) -> dict[str, float]:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.TransportError:
        return {}
    metrics = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            metrics[name] = float(value)
    return metrics


def test_retention_while_the_job_scores_a_backlog_and_the_api_stores(database_url, processes):
    engine = ready_engine(database_url)
    old = [_submission(engine, 10_000, age=2 * HOUR, scored=10_000, seed=seed) for seed in (1, 2)]
    young = _submission(engine, 2_000, age=60, scored=2_000, seed=3)
    backlog = submissions.register(engine, _rows(10_000, seed=4))
    old_ids = [item_id for registered in old for item_id in registered.item_ids]

    api = processes.start_http("api", ["src.api"], {"DATABASE_URL": database_url})
    metrics_port = free_port()
    job = processes.start(
        "job",
        ["src.task"],
        job_env(
            database_url,
            RETENTION_SECONDS=HOUR,
            BATCH_WAIT_TIME=0.1,
            METRICS_PORT=metrics_port,
            CHUNK_SIZE=500,
        ),
    )

    # Clients keep posting (some with keys, retried once) while the job scores and sweeps.
    stop = threading.Event()
    posted: list[int] = []
    failures: list[str] = []

    def client(number: int) -> None:
        with httpx.Client(base_url=api.base_url, timeout=60) as http:
            sent = 0
            while not stop.is_set():
                sent += 1
                headers = {"Idempotency-Key": f"client-{number}-{sent}"} if sent % 2 else {}
                body = {"data": _rows(300, seed=number * 1000 + sent)}
                for _ in range(1 + bool(headers)):
                    response = http.post("/predict", json=body, headers=headers)
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text}")
                        return
                posted.extend(response.json()["ids"])

    clients = [threading.Thread(target=client, args=(number,)) for number in range(3)]
    for thread in clients:
        thread.start()
    try:
        wait_for(
            lambda: (
                _scrape(metrics_port).get('batch_job_retention_deleted_total{table="items"}')
                == 20_000
            ),
            120,
            "retention to delete the old items",
        )
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    assert failures == []
    assert posted
    wait_for(lambda: queries.count_backlog(engine) == 0, 120, "the job to score every post")

    assert _present(engine, items, items.c.id, old_ids) == 0
    assert _present(engine, predictions, predictions.c.item_id, old_ids) == 0
    everything_new = young.item_ids + backlog.item_ids + posted
    assert _present(engine, items, items.c.id, everything_new) == len(everything_new)
    assert count_items(engine) == len(everything_new)
    assert count_predictions(engine) == len(everything_new)
    for registered in old:
        assert submissions.get_status(engine, registered.submission_id) is None
    status = httpx.get(f"{api.base_url}/submissions/{backlog.submission_id}").json()
    assert (status["scored"], status["pending"]) == (10_000, 0)

    metrics = wait_for(
        lambda: (m := _scrape(metrics_port)).get("batch_job_backlog_items") == 0 and m,
        30,
        "the backlog gauge at 0",
    )
    assert metrics['batch_job_retention_deleted_total{table="predictions"}'] == 20_000
    assert metrics['batch_job_retention_deleted_total{table="submissions"}'] == 2
    assert metrics["batch_job_oldest_unscored_age_seconds"] == 0
    log = job.log()
    for sign in ("lock_conflict", "Deadlock", "deadlock", "Lock wait", "Traceback", "ERROR"):
        assert sign not in log, log[-3000:]
    assert "retention deleted" in log
    assert not any(
        key.startswith("batch_job_errors_total") and value for key, value in metrics.items()
    )

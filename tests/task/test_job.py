"""The batch job as a real process: passes, exactly-once, kills, signals and outages."""

import os
import re
import signal
import threading
import time
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from src.db import queries
from src.db.engine import write_transaction
from src.db.packing import unpack_row
from src.db.retry import wait_unless_stopped
from src.db.tables import predictions
from tests.batch_support import (
    TcpRelay,
    count_items,
    count_predictions,
    job_env,
    mysql_connection,
    ready_engine,
    run_job_once,
    wait_for,
    wait_for_log,
)
from tooling.processes import free_port

PASS_DONE = re.compile(r"pass done: (\d+) items scored")


def _seed(engine, count: int) -> list[int]:
    rows = np.random.default_rng(count).uniform(0.1, 8, size=(count, 4)).tolist()
    return queries.insert_items(engine, rows)


def _assert_each_item_scored_once(engine, expected: int) -> None:
    with engine.connect() as connection:
        rows, distinct_items = connection.execute(
            select(func.count(), func.count(predictions.c.item_id.distinct()))
        ).one()
    assert count_items(engine) == expected
    assert rows == distinct_items == expected


def _scored_in_log(log: str) -> int:
    return sum(int(count) for count in PASS_DONE.findall(log))


def test_once_scores_the_whole_backlog_in_chunks(database_url, processes):
    engine = ready_engine(database_url)
    _seed(engine, 2345)
    log = run_job_once(processes, job_env(database_url, CHUNK_SIZE=100, WORKER_THREADS=3))
    assert _scored_in_log(log) == 2345
    _assert_each_item_scored_once(engine, 2345)
    # Nothing left: a second pass scores nothing.
    assert _scored_in_log(run_job_once(processes, job_env(database_url))) == 0


def test_a_pass_with_nothing_to_score_logs_one_line(database_url, processes):
    engine = ready_engine(database_url)
    _seed(engine, 10)
    run_job_once(processes, job_env(database_url))
    log = run_job_once(processes, job_env(database_url))
    pass_lines = [line for line in log.splitlines() if "pass " in line]
    assert len(pass_lines) == 1, log
    assert re.search(r"pass done: nothing to score \(\d+\.\d\ds\)$", pass_lines[0]), log


def test_probabilities_are_stored_for_every_class(database_url, processes):
    engine = ready_engine(database_url)
    _seed(engine, 50)
    run_job_once(processes, job_env(database_url))
    for row in queries.list_items(engine, "predicted", limit=100):
        probabilities = unpack_row(row.probabilities)
        assert len(probabilities) == 3
        assert sum(probabilities) == pytest.approx(1, abs=1e-5)


def test_two_jobs_at_once_score_each_item_exactly_once(database_url, processes):
    engine = ready_engine(database_url)
    _seed(engine, 20_000)
    env = job_env(database_url, CHUNK_SIZE=250, WORKER_THREADS=2)
    jobs = [processes.start(f"job-{index}", ["src.task", "--once"], env) for index in (1, 2)]
    for job in jobs:
        assert job.popen.wait(120) == 0, job.log()[-3000:]
    _assert_each_item_scored_once(engine, 20_000)
    # Claims split the work: no item was scored by both jobs (even a discarded second time).
    assert sum(_scored_in_log(job.log()) for job in jobs) == 20_000


def _seed_with_a_blocked_gap(engine, database_url: str):
    """1,000 items, and an open transaction that will stop a job mid-pass, mid-chunk.

    Items 500 and 1000 are scored beforehand, so the unique index on predictions.item_id
    has a gap (500, 1000). The returned transaction locks that gap (REPEATABLE READ):
    a job (CHUNK_SIZE=100, one thread) commits items 1..400, claims 401..501, and its
    INSERT waits on the lock with the chunk's transaction open until the test lets go.
    """
    _seed(engine, 1000)
    with write_transaction(engine) as connection:
        queries.insert_predictions(connection, [500, 1000], np.full((2, 3), 1 / 3), 1)
    blocker = mysql_connection(database_url)
    with blocker.cursor() as cursor:
        cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("BEGIN")
        cursor.execute("SELECT * FROM predictions WHERE item_id = 700 FOR UPDATE")
    return blocker


def _job_waits_on_a_lock(database_url: str) -> bool:
    """True once a job's INSERT of predictions has been running for a second or more.

    A chunk's INSERT takes milliseconds; one that lasts is waiting on the test's lock.
    """
    database = make_url(database_url).database
    with mysql_connection(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
            " WHERE DB = %s AND COMMAND = 'Query' AND TIME >= 1"
            " AND INFO LIKE 'INSERT INTO predictions%%'",
            (database,),
        )
        return cursor.fetchone()[0] > 0


@contextmanager
def _job_held_in_its_fifth_chunk(engine, mysql_url, processes, env, *job_args):
    """A job started over a seeded backlog, waiting on a lock inside its fifth chunk."""
    blocker = _seed_with_a_blocked_gap(engine, mysql_url)
    try:
        job = processes.start("job", ["src.task", *job_args], env)
        wait_for(lambda: _job_waits_on_a_lock(mysql_url), 60, "the job to wait in its fifth chunk")
        yield job
    finally:
        blocker.rollback()
        blocker.close()


@pytest.mark.mysql
def test_sigkill_mid_pass_then_rerun_scores_each_item_once(mysql_url, processes):
    engine = ready_engine(mysql_url)
    env = job_env(mysql_url, CHUNK_SIZE=100, WORKER_THREADS=1)
    with _job_held_in_its_fifth_chunk(engine, mysql_url, processes, env, "--once") as job:
        job.signal(signal.SIGKILL)
        job.popen.wait(10)
    # Whole chunks or nothing: four chunks and the two seeded rows, none of the killed chunk.
    assert count_predictions(engine) == 402

    run_job_once(processes, env)
    _assert_each_item_scored_once(engine, 1000)


@pytest.mark.mysql
def test_sigterm_finishes_the_current_chunk_and_exits_0(mysql_url, processes):
    engine = ready_engine(mysql_url)
    env = job_env(mysql_url, CHUNK_SIZE=100, WORKER_THREADS=1)
    with _job_held_in_its_fifth_chunk(engine, mysql_url, processes, env) as job:
        job.signal(signal.SIGTERM)
        wait_for_log(job, "finishing the chunks in flight")
    assert job.popen.wait(30) == 0, job.log()[-3000:]
    # The chunk in flight (401..501) was finished, and no new one was started.
    assert count_predictions(engine) == 502
    assert "pass done: 500 items scored" in job.log()
    assert "(stopped early)" in job.log()


def test_sigterm_while_waiting_exits_0(database_url, processes):
    ready_engine(database_url)
    job = processes.start("job", ["src.task"], job_env(database_url))
    wait_for_log(job, "pass done")
    job.signal(signal.SIGTERM)
    assert job.popen.wait(15) == 0, job.log()[-3000:]


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_metrics_show_the_backlog_drained(database_url, processes):
    engine = ready_engine(database_url)
    _seed(engine, 300)
    port = free_port()
    started = time.time()
    job = processes.start(
        "job", ["src.task"], job_env(database_url, METRICS_PORT=port, BATCH_WAIT_TIME=0.2)
    )

    def scraped() -> str | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.TransportError:
            return None
        return text if (_metric(text, "batch_job_passes_total") or 0) >= 1 else None

    metrics = wait_for(scraped, 30, "a pass on the job's /metrics")
    assert _metric(metrics, "batch_job_items_scored_total") == 300
    assert _metric(metrics, "batch_job_backlog_items") == 0
    assert _metric(metrics, "batch_job_oldest_unscored_age_seconds") == 0
    assert _metric(metrics, "batch_job_pass_duration_seconds_count") >= 1
    assert started < _metric(metrics, "batch_job_last_pass_timestamp_seconds") <= time.time()
    assert _metric(metrics, "batch_job_wait_time_seconds") == 0.2
    assert job.alive()


def test_missing_model_stops_start_up_with_one_line(database_url, processes):
    env = job_env(database_url, MODEL_FILEPATH="models/missing.onnx")
    job = processes.start("job", ["src.task", "--once"], env)
    assert job.popen.wait(30) == 2
    assert "job: cannot start: model file not found: models/missing.onnx" in job.log()
    assert "Traceback" not in job.log()


@pytest.mark.mysql
def test_database_outage_gives_503_and_the_job_catches_up(mysql_url, processes):
    direct_engine = ready_engine(mysql_url)
    server = make_url(mysql_url)
    relay = TcpRelay(server.host, server.port or 3306).start()
    try:
        relayed_url = server.set(host="127.0.0.1", port=relay.port).render_as_string(
            hide_password=False
        )
        api = processes.start_http("api", ["src.api"], {"DATABASE_URL": relayed_url})
        job = processes.start("job", ["src.task"], job_env(relayed_url, BATCH_WAIT_TIME=0.3))
        client = httpx.Client(base_url=api.base_url, timeout=30)
        (item_id,) = client.post("/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]}).json()["ids"]
        wait_for(lambda: client.get(f"/predict/id/{item_id}").json()["prediction"], 30, "scoring")

        relay.stop()
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["health"] == "unavailable"
        for response in (
            client.post("/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]}),
            client.get(f"/predict/id/{item_id}"),
            client.get("/data/all"),
        ):
            assert response.status_code == 503
            assert response.json()["error"] == "database unavailable"
            assert "Traceback" not in response.text
        # Items arrive by another way while the job cannot reach the database.
        _seed(direct_engine, 700)
        wait_for_log(job, "database unreachable", timeout=30)
        assert job.alive()

        relay.start()
        wait_for(lambda: queries.count_backlog(direct_engine) == 0, 60, "the job to catch up")
        wait_for(lambda: client.get("/health").status_code == 200, 30, "the API to recover")
        assert job.alive()
        assert api.alive()
        _assert_each_item_scored_once(direct_engine, 701)
        assert client.get(f"/predict/id/{item_id}").json()["label"] == "setosa"
    finally:
        relay.stop()


def test_a_signal_taken_by_another_thread_still_ends_the_wait_at_once():
    """The OS may hand SIGTERM to any thread; the main thread's wait must notice it soon."""
    stop_event = threading.Event()
    previous = signal.signal(signal.SIGUSR1, lambda *_: stop_event.set())
    # Started before the main thread blocks the signal, so it can take it, as a job's
    # scorer thread can take its SIGTERM.
    sender = threading.Thread(
        target=lambda: (time.sleep(0.3), os.kill(os.getpid(), signal.SIGUSR1))
    )
    sender.start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        started = time.monotonic()
        assert wait_unless_stopped(stop_event, 30)
        assert time.monotonic() - started < 5
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        signal.signal(signal.SIGUSR1, previous)
        sender.join()

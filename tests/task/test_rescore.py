"""Lineage and rescoring as real processes: every prediction records its model version,
and `--rescore` rewrites the older ones exactly once per item and version, after a
SIGKILL and with two jobs at once.

"Exactly once" is counted by the database itself: a trigger adds a row to
`prediction_writes` for every UPDATE of a predictions row, in the writer's transaction,
so a write rolled back (a killed chunk) leaves no row and a second write of one item for
one version leaves two.
"""

import re
import signal

import numpy as np
import pytest
from sqlalchemy import Engine, func, select, text

from src.db import queries
from src.db.engine import is_mysql, write_transaction
from src.db.packing import unpack_rows
from src.db.tables import items, predictions
from src.ml.predictor import Predictor
from src.ml.repository import ModelRepository
from tests.batch_support import job_env, ready_engine, run_job_once, wait_for

RESCORE_DONE = re.compile(
    r"rescore done: (\d+) predictions of older versions rescored to version (\d+)"
)
PASS_DONE = re.compile(r"pass done: (\d+) items scored")


def _seed(engine: Engine, count: int) -> list[int]:
    rows = np.random.default_rng(count).uniform(0.1, 8, size=(count, 4)).tolist()
    return queries.insert_items(engine, rows)


def _rescored_in_log(log: str, version: int = 2) -> int:
    return sum(int(count) for count, to in RESCORE_DONE.findall(log) if int(to) == version)


def _versions(engine: Engine) -> dict[int, int]:
    with engine.connect() as connection:
        return dict(
            connection.execute(
                select(predictions.c.model_version, func.count()).group_by(
                    predictions.c.model_version
                )
            ).all()
        )


def _count_writes(engine: Engine) -> None:
    """Record every UPDATE of a predictions row in `prediction_writes` (item, version)."""
    with write_transaction(engine) as connection:
        connection.execute(
            text("CREATE TABLE prediction_writes (item_id BIGINT NOT NULL, model_version INT)")
        )
        if is_mysql(connection):
            body = "INSERT INTO prediction_writes VALUES (NEW.item_id, NEW.model_version)"
        else:
            body = (
                "BEGIN INSERT INTO prediction_writes VALUES (NEW.item_id, NEW.model_version); END"
            )
        connection.execute(
            text(
                "CREATE TRIGGER count_prediction_writes AFTER UPDATE ON predictions "
                f"FOR EACH ROW {body}"
            )
        )


def _writes(engine: Engine) -> tuple[int, int]:
    """(writes, distinct (item, version) pairs written) so far."""
    with engine.connect() as connection:
        writes = connection.execute(text("SELECT COUNT(*) FROM prediction_writes")).scalar_one()
        distinct = connection.execute(
            text(
                "SELECT COUNT(*) FROM"
                " (SELECT DISTINCT item_id, model_version FROM prediction_writes) AS pairs"
            )
        ).scalar_one()
    return writes, distinct


def _scored_with_version_1(engine: Engine, processes, database_url: str, count: int) -> None:
    _seed(engine, count)
    log = run_job_once(processes, job_env(database_url, CHUNK_SIZE=1000, MODEL_VERSION=1))
    assert sum(int(n) for n in PASS_DONE.findall(log)) == count
    assert _versions(engine) == {1: count}


def _rescore_env(database_url: str, repository, **overrides) -> dict[str, str]:
    return job_env(database_url, MODEL_REPOSITORY=repository, **overrides)


def test_predictions_record_the_version_of_the_model_that_made_them(
    database_url, processes, iris_v2_repository, tmp_path
):
    engine = ready_engine(database_url)
    _seed(engine, 300)
    # Unpinned: the newest version present (2); pinned: the one named.
    run_job_once(processes, job_env(database_url, MODEL_REPOSITORY=iris_v2_repository))
    assert _versions(engine) == {2: 300}
    _seed(engine, 200)
    run_job_once(
        processes, job_env(database_url, MODEL_REPOSITORY=iris_v2_repository, MODEL_VERSION=1)
    )
    assert _versions(engine) == {2: 300, 1: 200}
    # One file instead of the repository: version MODEL_VERSION (1 unless set).
    _seed(engine, 100)
    single_file = iris_v2_repository / "iris" / "2" / "model.onnx"
    run_job_once(processes, job_env(database_url, MODEL_FILEPATH=single_file, MODEL_VERSION=7))
    assert _versions(engine) == {2: 300, 1: 200, 7: 100}


def test_a_version_not_in_the_repository_stops_start_up_with_one_line(database_url, processes):
    ready_engine(database_url)
    job = processes.start("job", ["src.task", "--once"], job_env(database_url, MODEL_VERSION=9))
    assert job.popen.wait(30) == 2
    assert (
        "job: cannot start: model repository models: 'iris' has no version 9 (present: 1)"
        in job.log()
    )
    assert "Traceback" not in job.log()


def test_rescore_moves_every_older_prediction_to_the_new_version_once(
    database_url, processes, iris_v2_repository
):
    engine = ready_engine(database_url)
    _scored_with_version_1(engine, processes, database_url, 3000)
    _count_writes(engine)
    # Items stored since are scored by the same run, with the new version, and not rescored.
    _seed(engine, 250)

    log = run_job_once(
        processes, _rescore_env(database_url, iris_v2_repository), args=["--rescore"]
    )
    assert sum(int(n) for n in PASS_DONE.findall(log)) == 250
    assert _rescored_in_log(log) == 3000
    assert _versions(engine) == {2: 3250}
    assert _writes(engine) == (3000, 3000)
    # The stored probabilities are version 2's for every item.
    with engine.connect() as connection:
        rows = connection.execute(
            select(items.c.data, predictions.c.probabilities)
            .join(predictions, predictions.c.item_id == items.c.id)
            .order_by(items.c.id)
        ).all()
    version_2 = Predictor(ModelRepository(iris_v2_repository).model_path("iris", 2)).load()
    expected = version_2.predict_proba(unpack_rows([row.data for row in rows], 4))
    np.testing.assert_allclose(unpack_rows([row.probabilities for row in rows], 3), expected)

    # Nothing older is left: a second run, and the spelling, write nothing.
    again = run_job_once(
        processes,
        _rescore_env(database_url, iris_v2_repository),
        module="src.task.job",
        args=["--rescore"],
    )
    assert _rescored_in_log(again) == 0
    # A job of an older version never rewrites newer predictions.
    older = run_job_once(processes, job_env(database_url, MODEL_VERSION=1), args=["--rescore"])
    assert RESCORE_DONE.search(older).group(1) == "0"
    assert _writes(engine) == (3000, 3000)


def test_sigkill_mid_rescore_then_rerun_writes_each_item_once(
    database_url, processes, iris_v2_repository
):
    count = 30_000
    engine = ready_engine(database_url)
    _scored_with_version_1(engine, processes, database_url, count)
    _count_writes(engine)
    env = _rescore_env(database_url, iris_v2_repository, CHUNK_SIZE=50, WORKER_THREADS=2)

    job = processes.start("job", ["src.task", "--rescore"], env)
    wait_for(lambda: _versions(engine).get(2, 0) >= 2000, 120, "the rescore to be under way")
    job.signal(signal.SIGKILL)
    job.popen.wait(10)
    done = _versions(engine).get(2, 0)
    assert 0 < done < count, "killed mid-run"
    # Whole chunks or nothing: every committed write is one item moved to version 2.
    assert _writes(engine) == (done, done)

    log = run_job_once(processes, env, args=["--rescore"])
    assert _rescored_in_log(log) == count - done
    assert _versions(engine) == {2: count}
    assert _writes(engine) == (count, count)


def test_two_rescoring_jobs_at_once_write_each_item_once(
    database_url, processes, iris_v2_repository
):
    count = 20_000
    engine = ready_engine(database_url)
    _scored_with_version_1(engine, processes, database_url, count)
    _count_writes(engine)
    env = _rescore_env(database_url, iris_v2_repository, CHUNK_SIZE=250, WORKER_THREADS=2)
    jobs = [processes.start(f"job-{index}", ["src.task", "--rescore"], env) for index in (1, 2)]
    for job in jobs:
        assert job.popen.wait(180) == 0, job.log()[-3000:]
    assert sum(_rescored_in_log(job.log()) for job in jobs) == count
    assert _versions(engine) == {2: count}
    assert _writes(engine) == (count, count)


@pytest.mark.parametrize("rescore", ["true", "false"])
def test_the_rescore_setting_rescores_after_each_pass(
    database_url, processes, iris_v2_repository, rescore
):
    engine = ready_engine(database_url)
    _scored_with_version_1(engine, processes, database_url, 500)
    log = run_job_once(processes, _rescore_env(database_url, iris_v2_repository, RESCORE=rescore))
    if rescore == "true":
        assert _rescored_in_log(log) == 500
        assert _versions(engine) == {2: 500}
    else:
        assert "rescore done" not in log
        assert _versions(engine) == {1: 500}

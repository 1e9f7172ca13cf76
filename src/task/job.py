"""The batch job: every `BATCH_WAIT_TIME` seconds, score every unscored item.

`python -m src.task` loops forever; `--once` runs one pass and exits (cron, a
Kubernetes CronJob); `--rescore` runs one pass, then scores again every prediction an
older model version made, and exits (`RESCORE=true` does that after every pass). A pass
hands chunks to a pool of `WORKER_THREADS` threads; each thread claims the next
`CHUNK_SIZE` unscored items, scores them with one ONNX Runtime call (which releases the
GIL) and writes their predictions, with the model's version, in one bulk INSERT, all in
one transaction. A killed job therefore leaves whole chunks or nothing, and the next
pass scores what is left; rescoring goes the same way (src/db/rescoring.py). After each
pass, the job stamps the submissions it completed and, with `RETENTION_SECONDS` set,
deletes old scored items in short chunks (src/db/retention.py). Metrics are served on
`METRICS_PORT` (0: off).
"""

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from sqlalchemy import Engine

from src.db import queries, rescoring, retention
from src.db.engine import create_db_engine, write_transaction
from src.db.layout import require_layout
from src.db.migrate import require_current_schema_when_reachable
from src.db.packing import unpack_rows
from src.db.retry import (
    DATABASE_DOWN_ERRORS,
    call_with_db_retry,
    is_lock_conflict,
    wait_unless_stopped,
)
from src.errors import or_exit
from src.ml.predictor import Predictor, load_labels
from src.observability import configure_logging
from src.settings import JobSettings

logger = logging.getLogger(__name__)

# A pass over a large backlog logs its progress this often.
PROGRESS_LOG_SECONDS = 5.0
# A rescore walks the older predictions again while its last walk found some: rows held
# by others or in a failed chunk. Bounded, so a chunk that always fails cannot loop.
MAX_RESCORE_WALKS = 3

ITEMS_SCORED = Counter("batch_job_items_scored_total", "Items scored and stored")
PASSES = Counter("batch_job_passes_total", "Scoring passes completed")
PASS_DURATION = Histogram(
    "batch_job_pass_duration_seconds",
    "Time of one scoring pass",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
BACKLOG = Gauge("batch_job_backlog_items", "Unscored items, as of the last count")
# The batch pattern's service-level indicator: how long the oldest waiting item has waited.
OLDEST_UNSCORED_AGE = Gauge(
    "batch_job_oldest_unscored_age_seconds",
    "Age of the oldest unscored item, as of the last count (0: none)",
)
RETENTION_DELETED = Counter(
    "batch_job_retention_deleted_total", "Rows deleted by retention", ["table"]
)
for _table in retention.Swept().as_dict():
    RETENTION_DELETED.labels(_table)  # listed at 0 from the start, for rate() and alerts
# An alert compares it with the time: a job that stopped passing shows no error of its own.
WAIT_TIME = Gauge("batch_job_wait_time_seconds", "BATCH_WAIT_TIME: the pause between passes")
LAST_PASS = Gauge(
    "batch_job_last_pass_timestamp_seconds", "Unix time the last completed pass ended (0: none)"
)
ERRORS = Counter("batch_job_errors_total", "Failed chunks and passes", ["kind"])
MODEL_INFO = Gauge(
    "batch_job_model_info", "1 for the model version the job scores with", ["model", "version"]
)
ITEMS_RESCORED = Counter(
    "batch_job_items_rescored_total", "Predictions of an older model version scored again"
)
RESCORE_BACKLOG = Gauge(
    "batch_job_rescore_backlog_items",
    "Predictions of an older model version than the job's, as of the last count",
)
RESCORE_RATE = Gauge(
    "batch_job_rescore_items_per_second", "Predictions rescored per second by the last rescore"
)
DB_RETRIES = Counter("batch_job_db_retries_total", "Attempts retried: database unreachable")


class ChunkCursor:
    """The id after which the pass claims its next chunk, shared by the worker threads.

    Claims are keyset reads (`id > after_id ORDER BY id LIMIT n`), so each one starts
    where the previous ended instead of rescanning the items already claimed.
    """

    def __init__(self, last_id: int | None = None) -> None:
        self.lock = threading.Lock()
        self.after_id = 0
        # A pass scores the items stored before it began: under a steady stream of POSTs
        # it still ends, so the steps between passes (completion, retention) run.
        self.last_id = last_id


@dataclass(frozen=True)
class JobModel:
    """The model the job scores with, and the version every prediction it writes records."""

    name: str
    version: int
    path: Path
    predictor: Predictor


@dataclass
class PassResult:
    scored: int
    seconds: float

    @property
    def items_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0


def score_next_chunk(engine: Engine, model: JobModel, cursor: ChunkCursor, chunk_size: int) -> int:
    """Claim, score and store the next chunk in one transaction; returns its size (0: done)."""
    with write_transaction(engine) as connection:
        # Claims one at a time, so the pass's threads never claim overlapping chunks.
        with cursor.lock:
            rows = queries.claim_unscored(connection, cursor.after_id, chunk_size, cursor.last_id)
            if rows:
                cursor.after_id = rows[-1].id
        if not rows:
            return 0
        item_ids = [row.id for row in rows]
        features = unpack_rows([row.data for row in rows], model.predictor.n_features)
        queries.insert_predictions(
            connection, item_ids, model.predictor.predict_proba(features), model.version
        )
    return len(item_ids)


def rescore_next_chunk(
    engine: Engine, model: JobModel, cursor: rescoring.RescoreCursor, chunk_size: int
) -> int | None:
    """Claim, score again and rewrite the next chunk of older predictions in one
    transaction; returns the rows written (None: the chunk was empty but more may follow,
    0: nothing older is left)."""
    with write_transaction(engine) as connection:
        with cursor.lock:
            rows = rescoring.claim_older(connection, cursor, chunk_size)
        if not rows:
            return 0
        features = unpack_rows([row.data for row in rows], model.predictor.n_features)
        written = rescoring.rewrite_predictions(
            connection,
            [row.id for row in rows],
            model.predictor.predict_proba(features),
            model.version,
        )
    # Another job may have rewritten every row of the claim first: still not the end.
    return written or None


@dataclass
class _Progress:
    """What a pass (or a rescore) has done of its backlog: counted, kept in its gauge, and
    logged now and then by `_run_chunks`."""

    backlog: int
    counter: Counter
    left_gauge: Gauge
    describe: Callable[[int, int], str]  # (done, left) -> the log line, before the rate
    started: float = field(default_factory=time.perf_counter)
    done: int = 0

    def on_chunk(self, count: int) -> None:
        self.done += count
        self.counter.inc(count)
        self.left_gauge.set(max(self.backlog - self.done, 0))

    def on_progress(self) -> None:
        rate = self.done / (time.perf_counter() - self.started)
        left = max(self.backlog - self.done, 0)
        logger.info("%s (%.0f items/s)", self.describe(self.done, left), rate)


def _run_chunks(
    pool: ThreadPoolExecutor,
    threads: int,
    stop_event: threading.Event,
    next_chunk: Callable[[], int | None],
    on_chunk: Callable[[int], None],
    on_progress: Callable[[], None],
) -> None:
    """Run `next_chunk` on the pool, one call per thread in flight, until one returns 0
    (nothing left) or `stop_event` is set; `on_chunk` gets each chunk's count.

    A chunk that fails is rolled back whole and left to the next pass. Raises the database
    error that stopped it, once the chunks in flight are done, so the caller can retry.
    """
    database_error: Exception | None = None
    last_progress = time.perf_counter()
    pending = {pool.submit(next_chunk) for _ in range(threads)}
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            try:
                count = future.result()
            except DATABASE_DOWN_ERRORS as error:
                if not is_lock_conflict(error):
                    database_error = error
                    continue
                # Another job holds a lock this chunk needs: leave it to the next pass.
                logger.warning("chunk rolled back on a lock conflict: %s", error)
                ERRORS.labels("lock_conflict").inc()
                count = None
            except Exception:
                # Its rows stay as they were (the transaction rolled back); the next pass retries.
                logger.exception("chunk failed; its items stay as they were until the next pass")
                ERRORS.labels("chunk").inc()
                count = None
            if count:
                on_chunk(count)
            if count != 0 and database_error is None and not stop_event.is_set():
                pending.add(pool.submit(next_chunk))
        now = time.perf_counter()
        if pending and now - last_progress >= PROGRESS_LOG_SECONDS:
            last_progress = now
            on_progress()
    if database_error is not None:
        raise database_error


def run_pass(
    engine: Engine,
    model: JobModel,
    pool: ThreadPoolExecutor,
    settings: JobSettings,
    stop_event: threading.Event,
) -> PassResult:
    """Score every unscored item; stops early (after the chunks in flight) on `stop_event`.

    Raises the database error that interrupted it, once its chunks in flight are done,
    so the caller can retry the pass when the database is back.
    """
    started = time.perf_counter()
    backlog = queries.count_backlog(engine)
    BACKLOG.set(backlog)
    OLDEST_UNSCORED_AGE.set(queries.oldest_unscored_age_seconds(engine))
    cursor = ChunkCursor(queries.last_item_id(engine))
    progress = _Progress(
        backlog,
        ITEMS_SCORED,
        BACKLOG,
        lambda done, left: f"pass in progress: {done} items scored, about {left} left",
    )
    _run_chunks(
        pool,
        settings.worker_threads,
        stop_event,
        lambda: score_next_chunk(engine, model, cursor, settings.chunk_size),
        progress.on_chunk,
        progress.on_progress,
    )
    result = PassResult(progress.done, time.perf_counter() - started)
    PASSES.inc()
    PASS_DURATION.observe(result.seconds)
    BACKLOG.set(queries.count_backlog(engine))
    OLDEST_UNSCORED_AGE.set(queries.oldest_unscored_age_seconds(engine))
    LAST_PASS.set_to_current_time()
    stopped = " (stopped early)" if stop_event.is_set() else ""
    if result.scored == 0:
        logger.info("pass done: nothing to score (%.2fs)%s", result.seconds, stopped)
        return result
    logger.info(
        "pass done: %d items scored in %.2fs (%.0f items/s)%s",
        result.scored,
        result.seconds,
        result.items_per_second,
        stopped,
    )
    return result


def run_rescore(
    engine: Engine,
    model: JobModel,
    pool: ThreadPoolExecutor,
    settings: JobSettings,
    stop_event: threading.Event,
) -> PassResult:
    """Score again every prediction an older model version made, oldest version first, in
    item order; stops early (after the chunks in flight) on `stop_event`.

    Exactly once per item and version, with other jobs at once or after a kill: see
    src/db/rescoring.py. Raises the database error that interrupted it, as `run_pass`.
    """
    started = time.perf_counter()
    older = rescoring.count_older(engine, model.version)
    RESCORE_BACKLOG.set(older)
    progress = _Progress(
        older,
        ITEMS_RESCORED,
        RESCORE_BACKLOG,
        lambda done, left: (
            f"rescore in progress: "
            f"{done} predictions rescored to version {model.version}, about {left} left"
        ),
    )

    # A walk skips the rows other transactions hold (another job's chunks, a retention
    # sweep) and leaves behind a chunk that failed; the next walk finds whatever of them is
    # still older. The walk that claims nothing is the last.
    for _ in range(MAX_RESCORE_WALKS if older else 0):
        cursor = rescoring.RescoreCursor(model.version)
        _run_chunks(
            pool,
            settings.worker_threads,
            stop_event,
            lambda cursor=cursor: rescore_next_chunk(engine, model, cursor, settings.chunk_size),
            progress.on_chunk,
            progress.on_progress,
        )
        if not cursor.claimed or stop_event.is_set():
            break
    result = PassResult(progress.done, time.perf_counter() - started)
    RESCORE_BACKLOG.set(rescoring.count_older(engine, model.version))
    stopped = " (stopped early)" if stop_event.is_set() else ""
    if result.scored:
        RESCORE_RATE.set(result.items_per_second)
    logger.info(
        "rescore done: %d predictions of older versions rescored to version %d in %.2fs "
        "(%.0f items/s)%s",
        result.scored,
        model.version,
        result.seconds,
        result.items_per_second,
        stopped,
    )
    return result


def after_pass(engine: Engine, settings: JobSettings, stop_event: threading.Event) -> None:
    """Stamp completed submissions, then retention; a lock conflict leaves it to next time."""
    try:
        swept = retention.sweep(engine, settings.retention_seconds, stop=stop_event)
    except DATABASE_DOWN_ERRORS as error:
        if not is_lock_conflict(error):
            raise
        logger.warning("retention stopped on a lock conflict: %s", error)
        ERRORS.labels("lock_conflict").inc()
        return
    for table, count in swept.as_dict().items():
        RETENTION_DELETED.labels(table).inc(count)
    if any(swept.as_dict().values()):
        logger.info(
            "retention deleted %s",
            ", ".join(f"{count} {table}" for table, count in swept.as_dict().items()),
        )


def load_job_model(settings: JobSettings) -> JobModel:
    """The model (MODEL_NAME's newest or pinned version, or MODEL_FILEPATH), checked to
    give one probability per class of the label file."""
    labels = load_labels(settings.label_filepath)
    version, path = settings.resolved_model()
    predictor = (
        Predictor(path).load().require_classes(len(labels), f"label file {settings.label_filepath}")
    )
    return JobModel(settings.model_name, version, path, predictor)


def _stop_on_signals(stop_event: threading.Event) -> None:
    def request_stop(signum: int, _frame) -> None:
        logger.info("%s: finishing the chunks in flight, then exiting", signal.strsignal(signum))
        stop_event.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def _count_retry() -> None:
    DB_RETRIES.inc()
    ERRORS.labels("database").inc()


def run(
    settings: JobSettings,
    model: JobModel,
    once: bool,
    stop_event: threading.Event,
    rescore: bool | None = None,
):
    """Pass after pass (one when `once`); `rescore` (default RESCORE) rescores after each."""
    rescore = settings.rescore if rescore is None else rescore
    engine = create_db_engine(
        settings.resolved_database_url(), pool_size=settings.worker_threads + 1
    )
    logger.info(
        "batch job using %s: model %s version %d (%s), %d threads, chunks of %d, %s, %s%s",
        engine.url.render_as_string(hide_password=True),
        model.name,
        model.version,
        model.path,
        settings.worker_threads,
        settings.chunk_size,
        "one pass" if once else f"a pass every {settings.batch_wait_time:g}s",
        "keeping every item"
        if settings.retention_seconds is None
        else f"deleting scored items after {settings.retention_seconds:g}s",
        ", rescoring older versions' predictions" if rescore else "",
    )
    MODEL_INFO.labels(model.name, str(model.version)).set(1)
    retry_options = {
        "max_wait": settings.db_retry_max_wait,
        "stop_event": stop_event,
        "on_retry": _count_retry,
    }
    WAIT_TIME.set(settings.batch_wait_time)
    pool = ThreadPoolExecutor(settings.worker_threads, thread_name_prefix="scorer")
    try:
        # Waits for the database like a pass does; an old schema ends the job with one line.
        or_exit(
            "job",
            lambda: require_current_schema_when_reachable(
                engine, migration_wait=settings.migration_wait, **retry_options
            ),
        )
        # Rows of another width would be misread: refused at start-up, recorded if new.
        or_exit(
            "job",
            lambda: require_layout(
                engine,
                model.predictor.n_features,
                model.predictor.n_classes,
                f"model {model.path}",
            ),
        )
        # A pass at start-up too, so a restarted job catches up before its first wait.
        while not stop_event.is_set():
            call_with_db_retry(
                lambda: run_pass(engine, model, pool, settings, stop_event),
                what="scoring pass",
                **retry_options,
            )
            if rescore and not stop_event.is_set():
                call_with_db_retry(
                    lambda: run_rescore(engine, model, pool, settings, stop_event),
                    what="rescoring",
                    **retry_options,
                )
            call_with_db_retry(
                lambda: after_pass(engine, settings, stop_event),
                what="retention",
                **retry_options,
            )
            if once or wait_unless_stopped(stop_event, settings.batch_wait_time):
                break
    except DATABASE_DOWN_ERRORS as error:
        if not stop_event.is_set():
            raise
        logger.info("stopped while the database was unreachable: %s", error)
    finally:
        pool.shutdown(wait=True)
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="run one pass, then exit")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="run one pass, then score again every prediction of an older model version, then exit",
    )
    args = parser.parse_args(argv)
    settings = or_exit("job", JobSettings)
    configure_logging(settings.log_level, settings.log_format)
    model = or_exit("job", lambda: load_job_model(settings))
    stop_event = threading.Event()
    _stop_on_signals(stop_event)
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
        logger.info("metrics on :%d/metrics", settings.metrics_port)
    run(settings, model, args.once or args.rescore, stop_event, rescore=args.rescore or None)
    logger.info("batch job exiting")


if __name__ == "__main__":
    # `python -m src.task.job --rescore`, the spelling of `python -m src.task`.
    main()

"""Schema migrations: a database of the release before migrations is upgraded in place,
keeping every row and id, then scored; the API and the job refuse any other schema."""

import re
import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text

from src.db import queries, submissions
from src.db.engine import create_db_engine, write_transaction
from src.db.layout import require_layout, stored_layout
from src.db.migrate import SchemaError, downgrade, head_revision, require_current_schema, upgrade
from src.db.packing import pack_rows, unpack_row
from src.db.tables import items, metadata, predictions
from tests.batch_support import count_items, count_predictions, job_env, run_job_once
from tests.db import iris_layout, legacy_schema
from tooling.processes import free_port, wait_until_healthy

ROW = [5.1, 3.5, 1.4, 0.2]
PASS_DONE = re.compile(r"pass done: (\d+) items scored")


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _schema(engine: Engine) -> dict:
    """What a schema is made of, as the database reports it (alembic_version left out)."""
    inspector = inspect(engine)
    described = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        described[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": [
                (fk["constrained_columns"], fk["referred_table"], fk["options"])
                for fk in inspector.get_foreign_keys(table)
            ],
            "unique": sorted(
                tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
            ),
        }
    return described


def _legacy_database(url: str, count: int, scored: int) -> Engine:
    """A database made and filled by the release before migrations: `scored` of `count`
    items have predictions, stored as that release's job stored them (no flag)."""
    engine = create_db_engine(url)
    legacy_schema.create_tables(engine)
    rows = np.random.default_rng(7).uniform(0.1, 8, size=(count, 4)).round(3).tolist()
    with write_transaction(engine) as connection:
        connection.execute(
            legacy_schema.items.insert(),
            [
                dict(zip(legacy_schema.FEATURE_COLUMNS, row, strict=True), id=index + 1)
                for index, row in enumerate(rows)
            ],
        )
        connection.execute(legacy_schema.id_blocks.update().values(next_id=count + 1))
        connection.execute(
            legacy_schema.predictions.insert(),
            [
                {
                    "item_id": item_id,
                    "probability_0": 0.1,
                    "probability_1": 0.2,
                    "probability_2": 0.7,
                }
                for item_id in range(1, scored + 1)
            ],
        )
    return engine


def _rows(engine: Engine, table) -> list[tuple]:
    """Every row of `table` but its `scored` flag and `model_version`, blobs unpacked in
    place, in id order: the rows of the 0003 layout (4 and 3 named columns) and of today's
    compare equal."""
    columns = [column for column in table.c if column.name not in ("scored", "model_version")]
    with engine.connect() as connection:
        rows = connection.execute(select(*columns).order_by(columns[0])).all()
    return [
        tuple(
            part
            for value in row
            for part in (unpack_row(value) if isinstance(value, bytes) else [value])
        )
        for row in rows
    ]


def test_revision_0001_is_the_schema_of_the_release_before_migrations(database_url):
    engine = create_db_engine(database_url)
    legacy_schema.create_tables(engine)
    before_migrations = _schema(engine)
    legacy_schema.metadata.drop_all(engine)

    upgrade(engine, "0001")
    assert _revision(engine) == "0001"
    assert _schema(engine) == before_migrations
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name, next_id FROM id_blocks")).all() == [
            ("items", 1)
        ]


def test_the_newest_revision_is_the_schema_of_tables_py(database_url):
    engine = create_db_engine(database_url)
    upgrade(engine)
    assert _revision(engine) == head_revision()
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_a_database_of_the_release_before_migrations_is_upgraded_then_scored(
    database_url, processes
):
    engine = _legacy_database(database_url, count=3000, scored=1200)
    items_before = _rows(engine, legacy_schema.items)
    predictions_before = _rows(engine, legacy_schema.predictions)

    upgrade_run = processes.start("upgrade", ["src.db", "upgrade"], {"DATABASE_URL": database_url})
    assert upgrade_run.popen.wait(120) == 0, upgrade_run.log()
    assert "stamping them at 0001" in upgrade_run.log()
    assert _revision(engine) == head_revision()
    # Every row, id and value kept; exactly the items with a prediction are marked scored.
    assert _rows(engine, items) == items_before
    assert _rows(engine, predictions) == predictions_before
    with engine.connect() as connection:
        flagged = connection.execute(select(items.c.id).where(items.c.scored)).scalars().all()
    assert flagged == list(range(1, 1201))
    assert queries.count_backlog(engine) == 1800

    log = run_job_once(processes, job_env(database_url, CHUNK_SIZE=500))
    assert sum(int(n) for n in PASS_DONE.findall(log)) == 1800
    assert queries.count_backlog(engine) == 0
    assert count_predictions(engine) == 3000
    # The old predictions are untouched, and new items continue the ids.
    assert _rows(engine, predictions)[:1200] == predictions_before
    assert queries.insert_items(engine, [ROW]) == [3001]


def test_upgrade_twice_keeps_rows_and_ids_going(database_url):
    engine = create_db_engine(database_url)
    upgrade(engine)
    first = queries.insert_items(engine, [ROW, ROW])
    assert upgrade(engine) == (head_revision(), head_revision())
    assert queries.insert_items(engine, [ROW]) == [3]
    assert first == [1, 2]


def test_concurrent_upgrades_migrate_once(database_url):
    # Replicas' init containers, or compose and a hand-run upgrade, may start together.
    engines = [create_db_engine(database_url) for _ in range(4)]
    errors = []
    barrier = threading.Barrier(len(engines))

    def run(engine) -> None:
        barrier.wait()
        try:
            upgrade(engine)
        except Exception as error:  # collected: an exception in a thread would be lost
            errors.append(error)

    threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _revision(engines[0]) == head_revision()
    assert queries.insert_items(engines[0], [ROW]) == [1]


def test_downgrade_to_0001_and_back_keeps_every_row(database_url):
    engine = create_db_engine(database_url)
    upgrade(engine)
    queries.insert_items(engine, [ROW] * 5)
    with write_transaction(engine) as connection:
        queries.insert_predictions(connection, [2, 4], np.full((2, 3), 1 / 3), 1)
    items_before = _rows(engine, items)

    downgrade(engine, "0001")
    assert "scored" not in {column["name"] for column in inspect(engine).get_columns("items")}
    assert count_predictions(engine) == 2
    upgrade(engine)
    assert _rows(engine, items) == items_before
    with engine.connect() as connection:
        flagged = connection.execute(select(items.c.id).where(items.c.scored)).scalars().all()
    assert flagged == [2, 4]


def test_part_of_the_old_tables_is_refused_not_stamped(database_url):
    engine = create_db_engine(database_url)
    legacy_schema.items.create(engine)
    with pytest.raises(SchemaError, match="has items but no id_blocks, predictions"):
        upgrade(engine)
    assert "alembic_version" not in inspect(engine).get_table_names()


def test_the_check_names_the_schema_found_and_the_one_needed(database_url):
    engine = create_db_engine(database_url)
    with pytest.raises(
        SchemaError, match=rf"at empty \(no tables\), this release needs {head_revision()}"
    ):
        require_current_schema(engine)
    legacy_schema.create_tables(engine)
    with pytest.raises(SchemaError, match=r"at unversioned \(tables of the release before"):
        require_current_schema(engine)
    upgrade(engine)
    assert require_current_schema(engine) == head_revision()
    with write_transaction(engine) as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaError, match="at 9999, which this release does not know"):
        require_current_schema(engine)


@pytest.mark.parametrize("revision", [None, "0001"])
def test_api_and_job_refuse_an_out_of_date_schema_with_one_line(database_url, processes, revision):
    engine = create_db_engine(database_url)
    if revision:
        upgrade(engine, revision)
    found = revision or "empty (no tables)"
    for name, module_args, env in (
        ("api", ["src.api"], {"DATABASE_URL": database_url}),
        ("job", ["src.task", "--once"], job_env(database_url)),
    ):
        process = processes.start(name, module_args, env)
        assert process.popen.wait(60) == 2, process.log()
        expected = (
            f"{name}: cannot start: database schema is at {found}, this release needs "
            f"{head_revision()}: run python -m src.db upgrade"
        )
        assert expected in process.log().splitlines()
        assert "Traceback" not in process.log()
    # Refusing changed nothing: still the schema it found.
    assert _revision(engine) == revision


def test_current_says_where_the_database_is(database_url, processes):
    env = {"DATABASE_URL": database_url}
    before = processes.start("current-before", ["src.db", "current"], env)
    assert before.popen.wait(60) == 0
    assert f"empty (no tables); this release needs {head_revision()}" in before.log()
    upgrade(create_db_engine(database_url))
    after = processes.start("current-after", ["src.db", "current"], env)
    assert after.popen.wait(60) == 0
    assert f": {head_revision()}; this release needs {head_revision()}" in after.log()


def test_a_filled_0002_database_is_upgraded_keeping_every_row(database_url):
    engine = create_db_engine(database_url)
    upgrade(engine, "0002")
    iris_layout.fill(engine, count=2500, scored=1000)
    before = {
        table.name: _rows(engine, table) for table in (iris_layout.items, iris_layout.predictions)
    }
    scored_before = _rows_with_flags(engine)

    upgrade(engine)
    assert _revision(engine) == head_revision()
    assert {table.name: _rows(engine, table) for table in (items, predictions)} == before
    assert _rows_with_flags(engine) == scored_before
    assert queries.count_backlog(engine) == 1500
    # Items from before belong to no submission; a new POST continues the ids.
    registered = submissions.register(engine, [ROW, ROW])
    assert registered.item_ids == [2501, 2502]
    assert submissions.get_status(engine, 2501).pending == 2

    downgrade(engine, "0002")
    assert not {"submissions", "idempotency_keys"} & set(inspect(engine).get_table_names())
    assert count_items(engine) == 2502


@pytest.mark.parametrize("count", [0, 25_000])
def test_a_filled_0003_database_keeps_every_value_and_id_in_packed_rows(database_url, count):
    """More rows than one batch of the MySQL path (10,000); every float64 bit for bit."""
    engine = create_db_engine(database_url)
    upgrade(engine, "0003")
    iris_layout.fill(engine, count=count, scored=count * 2 // 5)
    before = {
        table.name: _rows(engine, table) for table in (iris_layout.items, iris_layout.predictions)
    }
    flags_before = _rows_with_flags(engine)
    with engine.connect() as connection:
        blocks_before = connection.execute(text("SELECT name, next_id FROM id_blocks")).all()
        prediction_ids = connection.execute(text("SELECT MAX(id) FROM predictions")).scalar()

    upgrade(engine)
    assert _revision(engine) == head_revision()
    after = {table.name: _rows(engine, table) for table in (items, predictions)}
    assert after == before
    # Bit for bit too (== takes -0.0 for 0.0), extremes included (iris_layout.EDGE_VALUES).
    for table, values in (("items", slice(1, 5)), ("predictions", slice(2, 5))):
        assert _bits(after[table], values) == _bits(before[table], values), table
    assert _rows_with_flags(engine) == flags_before
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name, next_id FROM id_blocks")).all() == (
            blocks_before
        )
    # Recorded as the only layout 0003 could hold; an empty database is left for the first model.
    assert stored_layout(engine) == ((4, 3) if count else None)
    # A new POST gets the next ids, the job's next prediction the next prediction id.
    registered = submissions.register(engine, [ROW, ROW])
    assert registered.item_ids == [count + 1, count + 2]
    with write_transaction(engine) as connection:
        queries.insert_predictions(connection, [count + 1], np.array([[0.5, 0.25, 0.25]]), 1)
    with engine.connect() as connection:
        new_id = connection.execute(
            select(predictions.c.id).where(predictions.c.item_id == count + 1)
        ).scalar_one()
    assert new_id == (prediction_ids or 0) + 1


def test_downgrade_below_0004_is_refused_for_another_width(database_url):
    engine = create_db_engine(database_url)
    upgrade(engine)
    require_layout(engine, 13, 3, "model wine/1/model.onnx")
    queries.insert_items(engine, [[1.0] * 13])
    with pytest.raises(SchemaError, match="holds rows of 13 numbers and 3 classes"):
        downgrade(engine, "0003")
    assert _revision(engine) == head_revision()
    assert count_items(engine) == 1
    with engine.connect() as connection:
        data = connection.execute(select(items.c.data)).scalar_one()
    assert unpack_row(data) == [1.0] * 13


def _bits(rows: list[tuple], values: slice) -> bytes:
    return np.array([row[values] for row in rows], dtype=np.float64).tobytes()


def _rows_with_flags(engine: Engine) -> list[tuple]:
    with engine.connect() as connection:
        return connection.execute(select(items.c.id, items.c.scored).order_by(items.c.id)).all()


def test_with_migration_wait_api_and_job_start_once_the_migration_ran(database_url, processes):
    """Under an orchestrator that starts everything at once, they wait for migrate instead."""
    engine = create_db_engine(database_url)
    waiting = {"MIGRATION_WAIT": "120"}
    env = {"DATABASE_URL": database_url, **waiting}
    api = processes.start("api", ["src.api"], env, port=free_port())
    job = processes.start("job", ["src.task", "--once"], {**job_env(database_url), **waiting})
    for process in (api, job):
        deadline = time.monotonic() + 60
        while "waiting for the migration" not in process.log():
            assert process.alive(), process.log()
            assert time.monotonic() < deadline, process.log()
            time.sleep(0.2)
    upgrade(engine)
    assert job.popen.wait(60) == 0, job.log()
    assert "pass done" in job.log()
    wait_until_healthy(api, timeout=60)


def _model_versions(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return (
            connection.execute(select(predictions.c.model_version).order_by(predictions.c.id))
            .scalars()
            .all()
        )


@pytest.mark.parametrize("count", [0, 25_000])
def test_a_filled_0004_database_records_version_1_for_every_prediction(database_url, count):
    """Migration 0005: every row kept as it was, every existing prediction made by version 1."""
    engine = create_db_engine(database_url)
    upgrade(engine, "0004")
    rows = np.random.default_rng(11).uniform(-10, 10, size=(count, 4))
    item_ids = queries.insert_items(engine, rows)
    # The 0004 job's INSERT: no model_version column yet.
    old_predictions = sa.table(
        "predictions", sa.column("item_id"), sa.column("probabilities", sa.LargeBinary)
    )
    scored_ids = item_ids[: count * 2 // 5]
    if scored_ids:
        with write_transaction(engine) as connection:
            connection.execute(
                old_predictions.insert(),
                [
                    {"item_id": item_id, "probabilities": blob}
                    for item_id, blob in zip(
                        scored_ids,
                        pack_rows(np.random.default_rng(12).dirichlet([1, 1, 1], len(scored_ids))),
                        strict=True,
                    )
                ],
            )
            connection.execute(items.update().where(items.c.id.in_(scored_ids)).values(scored=True))
    before = {table.name: _rows(engine, table) for table in (items, predictions)}

    upgrade(engine)
    assert _revision(engine) == head_revision()
    assert {table.name: _rows(engine, table) for table in (items, predictions)} == before
    assert _model_versions(engine) == [1] * len(scored_ids)
    # No default left: a writer that does not name its version is refused.
    if item_ids:
        with pytest.raises(sa.exc.DBAPIError), write_transaction(engine) as connection:
            connection.execute(
                old_predictions.insert().values(item_id=item_ids[-1], probabilities=b"")
            )
    # A new prediction records the version that made it, beside the old ones.
    (new_id,) = queries.insert_items(engine, [ROW])
    with write_transaction(engine) as connection:
        queries.insert_predictions(connection, [new_id], np.array([[0.5, 0.25, 0.25]]), 3)
    assert _model_versions(engine) == [1] * len(scored_ids) + [3]

    downgrade(engine, "0004")
    assert "model_version" not in {c["name"] for c in inspect(engine).get_columns("predictions")}
    assert count_predictions(engine) == len(scored_ids) + 1
    upgrade(engine)
    assert _model_versions(engine) == [1] * (len(scored_ids) + 1)

"""The batch tables and queries, on SQLite and on a real MySQL-compatible server."""

import threading

import numpy as np
import pytest
from sqlalchemy import select

from src.db import queries, rescoring
from src.db.engine import is_mysql, write_transaction
from src.db.layout import LayoutError, require_layout, stored_layout
from src.db.packing import unpack_row, unpack_rows
from src.db.tables import items, predictions
from tests.batch_support import count_predictions, ready_engine

ROW = [5.1, 3.5, 1.4, 0.2]


def _score(engine, after_id: int, limit: int, probability: float = 0.5) -> list[int]:
    with write_transaction(engine) as connection:
        rows = queries.claim_unscored(connection, after_id, limit)
        item_ids = [row.id for row in rows]
        scores = np.full((len(rows), 3), probability, dtype=np.float32)
        queries.insert_predictions(connection, item_ids, scores, 1)
    return item_ids


def test_insert_items_returns_consecutive_ids_in_row_order(database_url):
    engine = ready_engine(database_url)
    rows = np.random.default_rng(0).uniform(0, 8, size=(2500, 4)).tolist()
    item_ids = queries.insert_items(engine, rows)
    assert item_ids == list(range(1, 2501))
    stored = queries.get_item(engine, 1234)
    # float64: every number exactly as sent.
    assert unpack_row(stored.data) == rows[1233]
    assert stored.scored_item_id is None


def test_rows_of_any_width_are_stored_and_claimed_as_sent(database_url):
    engine = ready_engine(database_url)
    rows = np.random.default_rng(1).normal(size=(30, 13))
    queries.insert_items(engine, rows)
    with write_transaction(engine) as connection:
        claimed = queries.claim_unscored(connection, after_id=0, limit=100)
        features = unpack_rows([row.data for row in claimed], 13)
        assert features.tobytes() == rows.tobytes()
        with pytest.raises(ValueError, match=r"stored rows of \[13\] numbers, expected 4"):
            unpack_rows([row.data for row in claimed], 4)
        queries.insert_predictions(connection, [1, 2], np.array([[0.1, 0.2, 0.3, 0.4]] * 2), 1)
    assert unpack_row(queries.get_item(engine, 2).probabilities) == pytest.approx(
        [0.1, 0.2, 0.3, 0.4]
    )


def test_the_first_model_records_the_layout_and_another_is_refused(database_url):
    engine = ready_engine(database_url)
    assert stored_layout(engine) is None
    require_layout(engine, 13, 3, "model wine.onnx")
    require_layout(engine, 13, 3, "model wine.onnx")  # the same model again: fine
    assert stored_layout(engine) == (13, 3)
    with pytest.raises(
        LayoutError,
        match=r"holds rows of 13 numbers scored into 3 classes; model iris.onnx takes 4 and "
        r"gives 3",
    ):
        require_layout(engine, 4, 3, "model iris.onnx")
    with pytest.raises(LayoutError, match="takes 13 and gives 2"):
        require_layout(engine, 13, 2, "model binary.onnx")


def test_concurrent_posts_get_disjoint_ids(database_url):
    engine = ready_engine(database_url)
    results: list[list[int]] = []

    def register() -> None:
        results.append(queries.insert_items(engine, [ROW] * 300))

    threads = [threading.Thread(target=register) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    all_ids = [item_id for ids in results for item_id in ids]
    assert len(results) == 4
    assert sorted(all_ids) == list(range(1, 1201))
    for ids in results:
        assert ids == list(range(ids[0], ids[0] + 300))


def test_get_item_unknown_is_none(database_url):
    assert queries.get_item(ready_engine(database_url), 42) is None


def test_claimed_chunks_follow_the_cursor_and_are_scored_once(database_url):
    engine = ready_engine(database_url)
    queries.insert_items(engine, [ROW] * 25)
    assert _score(engine, after_id=0, limit=10) == list(range(1, 11))
    assert _score(engine, after_id=10, limit=10) == list(range(11, 21))
    # From the start again: scored items are no longer claimed.
    assert _score(engine, after_id=0, limit=10) == list(range(21, 26))
    assert _score(engine, after_id=0, limit=10) == []
    assert queries.count_backlog(engine) == 0
    assert count_predictions(engine) == 25


def test_a_second_prediction_for_an_item_is_ignored(database_url):
    engine = ready_engine(database_url)
    (item_id,) = queries.insert_items(engine, [ROW])
    with write_transaction(engine) as connection:
        queries.insert_predictions(connection, [item_id], np.array([[0.7, 0.2, 0.1]]), 1)
    with write_transaction(engine) as connection:
        queries.insert_predictions(connection, [item_id], np.array([[0.1, 0.2, 0.7]]), 2)
    with engine.connect() as connection:
        stored = connection.execute(select(predictions)).all()
    assert len(stored) == 1
    assert unpack_row(stored[0].probabilities)[0] == pytest.approx(0.7)
    assert stored[0].model_version == 1


def test_list_items_pages_by_cursor_and_offset(database_url):
    engine = ready_engine(database_url)
    queries.insert_items(engine, [ROW] * 30)
    _score(engine, after_id=0, limit=12)

    assert [row.id for row in queries.list_items(engine, "all", limit=5)] == [1, 2, 3, 4, 5]
    assert [row.id for row in queries.list_items(engine, "all", 5, after_id=27)] == [28, 29, 30]
    assert [row.id for row in queries.list_items(engine, "all", 3, after_id=10, offset=2)] == [
        13,
        14,
        15,
    ]
    predicted = queries.list_items(engine, "predicted", limit=100)
    unpredicted = queries.list_items(engine, "unpredicted", limit=100)
    assert [row.id for row in predicted] == list(range(1, 13))
    assert [row.id for row in unpredicted] == list(range(13, 31))
    assert all(unpack_row(row.probabilities) == [0.5] * 3 for row in predicted)
    assert all(row.scored_item_id is None for row in unpredicted)


def test_an_item_is_marked_scored_with_its_prediction_and_only_then(database_url):
    engine = ready_engine(database_url)
    queries.insert_items(engine, [ROW] * 8)
    _score(engine, after_id=2, limit=3)
    with engine.connect() as connection:
        flagged = connection.execute(select(items.c.id).where(items.c.scored)).scalars().all()
        predicted = connection.execute(select(predictions.c.item_id)).scalars().all()
    assert flagged == sorted(predicted) == [3, 4, 5]
    assert queries.count_backlog(engine) == 5


def _index_used_on_items(engine, statement) -> str:
    """The index the database plans to read `items` through for `statement`."""
    compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as connection:
        if is_mysql(engine):
            rows = connection.exec_driver_sql(f"EXPLAIN {compiled}").mappings().all()
            return next(row["key"] for row in rows if row["table"] == "items")
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
    detail = next(row[-1] for row in rows if " items " in f" {row[-1]} ")
    return detail.split(" INDEX ")[1].split()[0] if " INDEX " in detail else detail


def test_claims_pages_and_the_backlog_count_read_the_scored_index(database_url):
    # The statements the job and the API run, as each database plans them over a history.
    engine = ready_engine(database_url)
    queries.insert_items(engine, [ROW] * 3000)
    _score(engine, after_id=0, limit=2500)
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE TABLE items" if is_mysql(engine) else "ANALYZE")
    claim = queries.claim_query(after_id=0, limit=100)
    statements = {
        "claim": claim.with_for_update(skip_locked=True) if is_mysql(engine) else claim,
        "predicted page": queries.page_query("predicted", 100, after_id=10),
        "unpredicted page": queries.page_query("unpredicted", 100, offset=20),
        "backlog": queries.backlog_query(),
    }
    for what, statement in statements.items():
        assert _index_used_on_items(engine, statement) == queries.SCORED_INDEX, what


def test_the_rescore_claim_walks_one_version_in_item_order_through_its_index(database_url):
    """A range of (model_version, item_id), read in order: no sort of the older predictions,
    however many there are, and none of the newer ones read."""
    engine = ready_engine(database_url)
    item_ids = queries.insert_items(engine, [ROW] * 3000)
    with write_transaction(engine) as connection:
        queries.insert_predictions(connection, item_ids[:2000], np.full((2000, 3), 1 / 3), 2)
        queries.insert_predictions(connection, item_ids[2000:], np.full((1000, 3), 1 / 3), 1)
    claim = rescoring.claim_query(version=1, after_id=2100, limit=100)
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE TABLE predictions" if is_mysql(engine) else "ANALYZE")
        compiled = claim.compile(engine, compile_kwargs={"literal_binds": True})
        if is_mysql(engine):
            plan = connection.exec_driver_sql(f"EXPLAIN {compiled}").mappings().all()
            (scan,) = [row for row in plan if row["table"] == "predictions"]
            assert scan["key"] == rescoring.VERSION_INDEX
            assert scan["type"] == "range"
            assert "filesort" not in (scan["Extra"] or "")
        else:
            plan = [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")]
            range_of_the_index = f"{rescoring.VERSION_INDEX} (model_version=? AND item_id>?)"
            assert any(range_of_the_index in step for step in plan), plan
            assert not any("TEMP B-TREE" in step for step in plan), plan
        rows = connection.execute(claim).all()
    assert [row.id for row in rows] == item_ids[2100:2200]

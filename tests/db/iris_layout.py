"""The items and predictions of revisions 0002 and 0003: four and three named columns.

Frozen here, so the tests can fill a database as that release's API and job did, then
upgrade it to today's packed rows (revision 0004).
"""

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    update,
)

from src.db.engine import write_transaction

FEATURE_COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
PROBABILITY_COLUMNS = ("probability_0", "probability_1", "probability_2")
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Id, primary_key=True),
    *(Column(name, Double()) for name in FEATURE_COLUMNS),
    Column("created_at", DateTime()),
    Column("scored", Boolean(create_constraint=False)),
)
predictions = Table(
    "predictions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("item_id", Id),
    *(Column(name, Double()) for name in PROBABILITY_COLUMNS),
    Column("created_at", DateTime()),
)
id_blocks = Table(
    "id_blocks",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("next_id", BigInteger()),
)
# Numbers whose float64 must survive the upgrade bit for bit, beside random ones.
EDGE_VALUES = [5e-324, -0.0, 1.7976931348623157e308, 0.1, -123456.789012345678, 1 / 3]


def fill(engine: Engine, count: int, scored: int, seed: int = 7) -> None:
    """`count` items 1..count (`scored` of them with predictions), as the 0003 API and job
    stored them, and the id counter moved past them."""
    rng = np.random.default_rng(seed)
    rows = rng.uniform(-10, 10, size=(count, 4))
    rows.flat[: len(EDGE_VALUES)] = EDGE_VALUES
    probabilities = rng.dirichlet([1, 1, 1], size=scored)
    with write_transaction(engine) as connection:
        if not count:
            return
        connection.execute(
            items.insert(),
            [
                dict(zip(FEATURE_COLUMNS, row, strict=True), id=index + 1, scored=index < scored)
                for index, row in enumerate(rows.tolist())
            ],
        )
        if scored:
            connection.execute(
                predictions.insert(),
                [
                    dict(zip(PROBABILITY_COLUMNS, row, strict=True), item_id=index + 1)
                    for index, row in enumerate(probabilities.tolist())
                ],
            )
        connection.execute(
            update(id_blocks).where(id_blocks.c.name == "items").values(next_id=count + 1)
        )

"""The model layout a database was filled for: its row width F and class count K.

Items and predictions are blobs of any width (src/db/packing.py), so nothing in the
schema stops a model of another width from misreading them. The first API or job to
start on a database records its model's F and K in `model_layout`; every later start
compares, and a process whose model differs exits with one line instead of serving
rows it cannot read.
"""

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from src.db.engine import write_transaction
from src.db.tables import model_layout
from src.errors import StartupError

LAYOUT_ID = 1


class LayoutError(StartupError):
    """The database holds rows of another model's width or class count."""


def stored_layout(engine: Engine) -> tuple[int, int] | None:
    """(F, K) recorded for this database, or None before any process recorded one."""
    with engine.connect() as connection:
        row = connection.execute(
            select(model_layout.c.n_features, model_layout.c.n_classes).where(
                model_layout.c.id == LAYOUT_ID
            )
        ).one_or_none()
    return None if row is None else (row.n_features, row.n_classes)


def require_layout(engine: Engine, n_features: int, n_classes: int, model: str) -> None:
    """Record (F, K) on a database that has none; LayoutError when it has another."""
    stored = stored_layout(engine)
    if stored is None:
        try:
            with write_transaction(engine) as connection:
                connection.execute(
                    insert(model_layout).values(
                        id=LAYOUT_ID, n_features=n_features, n_classes=n_classes
                    )
                )
            return
        except IntegrityError:
            stored = stored_layout(engine)  # another process recorded it first
    if stored != (n_features, n_classes):
        raise LayoutError(
            f"the database holds rows of {stored[0]} numbers scored into {stored[1]} classes; "
            f"{model} takes {n_features} and gives {n_classes}: use a database of its own "
            "(or the model it was filled for)"
        )

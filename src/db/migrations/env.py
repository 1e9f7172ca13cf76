"""Alembic's entry point for src/db/migrations: run by `python -m src.db` (src/db/migrate.py).

The caller hands over an open connection (config.attributes["connection"]), on which it
already holds the lock that keeps two upgrades from running at once.
"""

from alembic import context

from src.db.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `python -m src.db`, which opens the connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters most columns only by copying the table: new revisions get batch ops.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

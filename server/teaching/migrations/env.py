"""Alembic's environment: run by ``server.teaching.migrate`` on a connection it opened (online only)."""

from alembic import context

from server.teaching.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `python -m server migrate` (it opens the connection)")
# Batch mode: SQLite alters a table by copying it, which Alembic does only when asked.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

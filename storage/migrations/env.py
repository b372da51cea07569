"""Alembic environment: runs on the connection handed over by storage.db (no alembic.ini)."""

from alembic import context

from storage.models import Base

connection = context.config.attributes.get("connection")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite rebuilds tables for ALTER
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

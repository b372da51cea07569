"""Alembic environment: runs on the connection handed over by storage.db (no alembic.ini)."""

from alembic import context

from storage.models import Base

# Instances started together on one PostgreSQL database would each create the same tables:
# one migrates at a time (a lock held until its transaction ends), the others then find the
# schema up to date. SQLite has one writer at a time already.
MIGRATION_LOCK = 0x67726964  # "grid"

connection = context.config.attributes.get("connection")
if connection is not None and connection.dialect.name == "postgresql":
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite rebuilds tables for ALTER
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

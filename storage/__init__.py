"""Storage: SQLAlchemy 2 models, database setup, shared queries and Alembic migrations.

Imports neither `bot` nor `commands`.
"""

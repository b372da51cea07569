"""Database setup: one async engine, SQLite tuned for concurrent writers, migrations at start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage import audit  # noqa: F401  (registers the change capture for the audit log)
from storage.sqlite_inline import inline_url

MIGRATIONS = Path(__file__).parent / "migrations"
WRITER_TIMEOUT = 30  # seconds, as SQLite's busy_timeout


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = create_async_engine(inline_url(url), pool_size=10, max_overflow=20)
            _tune_sqlite(self.engine)
        else:
            self.engine = create_async_engine(
                url, pool_size=10, max_overflow=20, pool_pre_ping=True
            )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Within this process, writers queue here in order
        # instead of in SQLite's busy handler, which sleeps in growing steps and so turns a
        # short queue into long waits. Other processes still meet busy_timeout.
        self._writer = asyncio.Lock() if self.is_sqlite else None

    async def migrate(self) -> None:
        """Brings the schema to the newest migration (idempotent)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits when the block ends, rolls back on an exception."""
        if self._writer is None:
            async with self.sessions() as session, session.begin():
                yield session
            return
        async with asyncio.timeout(WRITER_TIMEOUT):
            await self._writer.acquire()
        try:
            async with self.sessions() as session, session.begin():
                yield session
        finally:
            self._writer.release()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A unit of work in SQL only (no ORM session, cheaper): commits when the block
        ends, rolls back on an exception."""
        if self._writer is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with asyncio.timeout(WRITER_TIMEOUT):
            await self._writer.acquire()
        try:
            async with self.engine.begin() as conn:
                yield conn
        finally:
            self._writer.release()

    async def close(self) -> None:
        await self.engine.dispose()


def _tune_sqlite(engine: AsyncEngine) -> None:
    # WAL lets readers run beside the writer; BEGIN IMMEDIATE takes the write lock up front,
    # so concurrent read-then-write transactions wait (busy_timeout) instead of failing
    # with "database is locked".
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(WRITER_TIMEOUT * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(connection=None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection) -> None:
    alembic_command.upgrade(alembic_config(connection), "head")

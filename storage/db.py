"""Database setup: one async engine, SQLite tuned for concurrent writers, migrations at start,
and group commit: units of work that arrive together share one transaction, each in a
savepoint of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage import audit, versions  # noqa: F401  (register the audit capture, the version bump)
from storage.sqlite_inline import inline_url

MIGRATIONS = Path(__file__).parent / "migrations"
WRITER_TIMEOUT = 30  # seconds, as SQLite's busy_timeout
GROUP_LIMIT = 64  # units of work in one shared transaction
RIDE_WAIT = 0.02  # seconds a rider waits for a transaction to share before taking its own

Work = Callable[[AsyncSession], Awaitable[Any]]


@dataclass
class _Unit:
    work: Work
    done: asyncio.Future


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
        self._grouped: list[_Unit] = []
        self._group_runner: asyncio.Task | None = None
        self._riders: list[_Unit] = []
        self._ride_timer: asyncio.TimerHandle | None = None

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

    async def grouped(self, work: Work) -> Any:
        """Runs `work` in a transaction shared with the units submitted while the one before
        was running (group commit: a burst of commands costs one commit, not one each).
        Each runs in a savepoint of its own: one that raises is rolled back alone and its
        exception raised here. Returns its result once the transaction has committed; if
        the commit fails, every unit of it gets that error (nothing of it was kept)."""
        unit = _Unit(work, asyncio.get_running_loop().create_future())
        self._grouped.append(unit)
        self._start_groups()
        return await unit.done

    def ride(self, work: Work) -> asyncio.Future:
        """Runs `work` at the start of the next shared transaction, or in one of its own if
        none starts within RIDE_WAIT: for bookkeeping that may wait a moment (the outbox's
        "sent" marks), so that a reply does not cost a commit of its own. Riders run
        before the group's units and without savepoints (they are single statements that
        do not fail but for the database itself); if one raises anyway, it alone gets the
        error and the units run again without it. The returned future says how it went."""
        unit = _Unit(work, asyncio.get_running_loop().create_future())
        self._riders.append(unit)
        if self._group_runner is None and self._ride_timer is None:
            self._ride_timer = asyncio.get_running_loop().call_later(
                RIDE_WAIT, self._start_groups
            )
        return unit.done

    def ride_now(self) -> None:
        """Runs the waiting riders without waiting for company (before stopping)."""
        if self._riders:
            self._start_groups()

    def _start_groups(self) -> None:
        if self._ride_timer is not None:
            self._ride_timer.cancel()
            self._ride_timer = None
        if self._group_runner is None:
            self._group_runner = asyncio.create_task(self._run_groups(), name="group commit")

    async def _run_groups(self) -> None:
        try:
            while self._grouped or self._riders:
                riders, self._riders = self._riders, []
                group = self._grouped[:GROUP_LIMIT]
                del self._grouped[:GROUP_LIMIT]
                await self._run_group(riders, group)
        finally:
            self._group_runner = None

    async def _run_group(self, riders: list[_Unit], group: list[_Unit]) -> None:
        outcomes: list[tuple[_Unit, Any, BaseException | None]] = []
        riding = True
        try:
            async with self.transaction() as session:
                for rider in riders:
                    outcomes.append((rider, await rider.work(session), None))
                riding = False
                if len(group) == 1:  # alone, its transaction is its savepoint
                    outcomes.append((group[0], await group[0].work(session), None))
                else:
                    for unit in group:
                        try:
                            async with session.begin_nested():
                                outcomes.append((unit, await unit.work(session), None))
                        except Exception as error:
                            if transient(error):
                                raise  # the transaction itself is in doubt: all run again
                            outcomes.append((unit, None, error))
        except BaseException as error:
            said_no = isinstance(error, Exception) and not transient(error)
            if said_no and riding:  # a rider failed: it alone is told; the units run next
                for rider in riders:
                    rider.done.set_exception(error)
                self._grouped[:0] = group
                return
            if said_no and riders:
                self._riders[:0] = riders  # rolled back with the units that failed: again
            else:
                for rider in riders:
                    rider.done.set_exception(error)
            for unit in group:  # nothing of the group was kept
                unit.done.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for unit, value, problem in outcomes:
            if problem is not None:
                unit.done.set_exception(problem)
            else:
                unit.done.set_result(value)

    async def close(self) -> None:
        self.ride_now()
        if self._group_runner is not None:
            await asyncio.wait([self._group_runner])
        await self.engine.dispose()


# Driver errors that mean "the connection is gone or the server is not accepting yet", or
# "this transaction lost a race with another and was rolled back: run it again" (a deadlock
# between commands that share a transaction and others; a serialization failure). asyncpg's,
# by class name, so that SQLite-only installs need no asyncpg.
_RUN_AGAIN = {
    "PostgresConnectionError", "ConnectionDoesNotExistError", "OperatorInterventionError",
    "CannotConnectNowError", "ConnectionFailureError",
    "TransactionRollbackError",  # deadlock detected, serialization failure
}


def transient(error: BaseException) -> bool:
    """Whether an error means the database is unavailable for now (SQLite locked beyond its
    busy timeout, PostgreSQL restarting or unreachable) or rolled the transaction back to
    settle a race (a deadlock), so the command may simply run again."""
    seen = 0
    cause: BaseException | None = error
    while cause is not None and seen < 8:
        if isinstance(cause, DBAPIError) and (
            cause.connection_invalidated or isinstance(cause, OperationalError | InterfaceError)
        ):
            return True
        if isinstance(cause, ConnectionError | TimeoutError) or type(cause) is OSError:
            return True
        if any(cls.__name__ in _RUN_AGAIN for cls in type(cause).__mro__):
            return True
        cause = getattr(cause, "orig", None) or cause.__cause__ or cause.__context__
        seen += 1
    return False



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

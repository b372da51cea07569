"""SQLite for the async engine without a thread per connection.

SQLAlchemy's aiosqlite driver runs every statement on a thread of its own and waits for it
in the event loop: a command of fifteen statements is fifteen hand-overs between threads,
each a wake-up of the loop and a fight for the GIL — about half of what a command cost. A
SQLite statement on a local file takes microseconds, and commits in WAL mode with
synchronous=NORMAL do not wait for the disk, so here the async engine calls sqlite3
directly, in the event loop's thread: the async API stays, the hops go.

What this trades: a long statement (a city's digest) holds the event loop while it runs, and
a write lock held by ANOTHER process would be waited for in the loop (busy_timeout). gridbot
keeps one process per SQLite file (its writers queue in `Database`); several instances use
PostgreSQL, whose driver is truly asynchronous.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.util.concurrency import await_, in_greenlet

DRIVER = "gridbot_inline"


class SQLiteDialect_inline(SQLiteDialect_pysqlite):  # noqa: N801 (SQLAlchemy's naming)
    driver = DRIVER
    is_async = True  # usable by create_async_engine; its calls simply never suspend
    supports_statement_cache = True

    @classmethod
    def get_pool_class(cls, url):
        # The pool's waits must be awaits, not thread blocks: many sessions share one loop.
        return pool.AsyncAdaptedQueuePool

    def get_driver_connection(self, connection):
        return connection

    def create_connect_args(self, url):
        args, options = super().create_connect_args(url)
        base = options.get("factory") or sqlite3.Connection
        options["factory"] = type("InlineConnection", (_Connection, base), {})
        return args, options

    # AsyncConnection.execute insists that a statement awaited something: each statement
    # awaits a no-op (a switch between greenlets, no trip through the event loop).
    def do_execute(self, cursor, statement, parameters, context=None):
        cursor.execute(statement, parameters)
        _awaited()

    def do_execute_no_params(self, cursor, statement, context=None):
        cursor.execute(statement)
        _awaited()

    def do_executemany(self, cursor, statement, parameters, context=None):
        cursor.executemany(statement, parameters)
        _awaited()


class _Cursor(sqlite3.Cursor):
    async def _async_soft_close(self) -> None:
        """What the async result API calls on a cursor: rows are fetched as usual."""


class _Connection:
    def cursor(self, factory=_Cursor):
        return super().cursor(factory)


async def _nothing() -> None:
    pass


def _awaited() -> None:
    if in_greenlet():
        await_(_nothing())


registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteDialect_inline")


def inline_url(url: str) -> str:
    """`sqlite+aiosqlite:///x.db` → the same file through this driver."""
    return url.replace("sqlite+aiosqlite://", f"sqlite+{DRIVER}://", 1)

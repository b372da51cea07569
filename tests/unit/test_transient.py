"""Which errors mean "the database is unavailable for now" (run the command again)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from storage.db import transient


class TransactionRollbackError(Exception):
    """Named like asyncpg's: PostgreSQL rolled a transaction back to settle a race."""


class DeadlockDetectedError(TransactionRollbackError):
    """Named like asyncpg's: PostgreSQL rolled the transaction back to end a deadlock."""


class ConnectionDoesNotExistError(Exception):
    """Named like asyncpg's: the connection was closed mid-operation."""


def wrapped(orig: Exception, kind=DBAPIError) -> Exception:
    return kind("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    "error",
    [
        wrapped(Exception("database is locked"), OperationalError),
        wrapped(ConnectionDoesNotExistError("closed in the middle of operation")),
        wrapped(DeadlockDetectedError("deadlock detected")),
        ConnectionRefusedError(111, "Connect call failed"),
        OSError("Multiple exceptions: [Errno 111] Connect call failed"),
        TimeoutError(),
    ],
)
def test_unavailable_database_is_transient(error):
    assert transient(error)


@pytest.mark.parametrize(
    "error",
    [
        wrapped(Exception("duplicate key"), IntegrityError),
        ValueError("bug"),
        KeyError("bug"),
        FileNotFoundError("x"),
        RuntimeError("template bug"),
    ],
)
def test_bugs_are_not_transient(error):
    assert not transient(error)

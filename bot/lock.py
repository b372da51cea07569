"""One instance per SQLite file: an OS lock on a file next to the database.

SQLite serves one bot process well; two processes on one file each deliver the outbox and
run the scheduler's sweeps. The lock is held while the process lives and released by the
OS when it exits, however it exits (no stale lock after kill -9). Several instances need
PostgreSQL, whose leases share the work.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url


class AlreadyRunning(Exception):
    """Another process holds the lock; the message says which and what to do."""


def sqlite_file(db_url: str) -> Path | None:
    """The database file of an SQLite URL; None for PostgreSQL or an in-memory database."""
    url = make_url(db_url)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


class InstanceLock:
    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".lock")
        self._file = None

    def acquire(self) -> None:
        """Takes the lock or raises AlreadyRunning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115  (held open while the process runs)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise AlreadyRunning(
                f"another gridbot (pid {holder}) is already running on the SQLite database "
                f"{self.database}. SQLite serves one instance; to run several instances, use "
                "PostgreSQL (GRIDBOT_DATABASE_URL=postgresql://…)."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def holder(self) -> str | None:
        """The pid holding the lock, if any (for `gridbot check`), without taking it."""
        if not self.path.exists():
            return None
        with open(self.path, "a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                return handle.read().strip() or "?"
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

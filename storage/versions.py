"""A version of the rows every message's context is made of: people, chats, communities,
grids and memberships. It changes in the transaction that writes any of them, so that what
was read at one version (bot/context_cache.py) is known to be current or not.

Within a process the version is a counter per engine (per app), bumped when a session of
it flushes such a row or runs an ORM statement on such a table. Instances sharing a
PostgreSQL also keep it in the database (`key_values`), written in the same transaction,
so that a change made by another instance counts as soon as it commits. One process per
SQLite file (bot/lock.py) needs only the counter.
"""

from __future__ import annotations

import uuid
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, event, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session

from storage import models

WATCHED = frozenset({"people", "chats", "communities", "grids", "memberships"})
KEY = "context-version"

_local: WeakKeyDictionary[Engine, int] = WeakKeyDictionary()


def local(engine: Engine) -> int:
    """The version as this engine (this app) knows it."""
    return _local.get(engine, 0)


async def shared(db: AsyncSession) -> str | None:
    """The version kept in a database several instances share (None: never bumped)."""
    return await db.scalar(select(models.KeyValue.value).where(models.KeyValue.key == KEY))


def _bump(session: Session) -> None:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    _local[engine] = _local.get(engine, 0) + 1
    if engine.dialect.name == "sqlite":
        return
    table = models.table(models.KeyValue)
    token = uuid.uuid4().hex
    session.connection().execute(
        postgresql_insert(table).values(key=KEY, value=token)
        .on_conflict_do_update(index_elements=[table.c.key], set_={"value": token})
    )


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context) -> None:
    changed = [*session.new, *session.deleted]
    changed += [obj for obj in session.dirty if session.is_modified(obj)]
    if any(getattr(obj, "__tablename__", None) in WATCHED for obj in changed):
        _bump(session)


@event.listens_for(Session, "do_orm_execute")
def _statement(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) in WATCHED:
        _bump(state.session)

"""Who is speaking and where, remembered between messages.

Every message needs its sender, its chat with the chat's community and grid, and the
sender's roles: four queries and the ORM's loading, about a third of what a command cost.
They change rarely (someone joins, a grid is linked, a setting is changed), so the
dispatcher keeps them here, by transport, chat and sender, and gives each command
those rows, attached to its session without a query.

A copy counts only while the version it was read at is current (storage/versions.py: any
write to people, chats, communities, grids or memberships changes it), and only if the
message still matches it (the sender's name or username, a direct chat's address). A row a
command changes changes the version when it is written, so it is read again next time; a
transaction that did not commit keeps nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import Engine, inspect
from sqlalchemy.ext.asyncio import AsyncSession

from bot.people import Standing
from bot.transports.base import Incoming
from storage import models, versions

KEEP = 5_000  # (chat, sender) pairs, ~6 KiB each; the least recently seen go first


@dataclass(frozen=True)
class Found:
    """A message's context as the dispatcher needs it."""

    person: models.Person
    chat: models.Chat
    community: models.Community | None
    grid: models.Grid | None
    standing: Standing
    communities: list[models.Community]


@dataclass(frozen=True)
class Seen:
    """A message's context as read at `version`."""

    key: tuple[str, str, str]
    version: object
    found: Found


class ContextCache:
    def __init__(self, engine: Engine, shared: bool) -> None:
        self.engine = engine
        # Instances sharing a database read its version; one process alone knows it.
        self.shared = shared
        self._seen: OrderedDict[tuple[str, str, str], Seen] = OrderedDict()

    async def version(self, db: AsyncSession) -> object:
        """The version now: read at the start of the transaction, before anything is
        looked up, so that rows are never newer than the version they are kept with."""
        if self.shared:
            return (versions.local(self.engine), await versions.shared(db))
        return versions.local(self.engine)

    def get(self, db: AsyncSession, msg: Incoming, version: object) -> Found | None:
        key = (msg.transport, msg.chat, msg.sender)
        seen = self._seen.get(key)
        if seen is None or seen.version != version:
            return None
        found = seen.found
        rows = [found.person, found.chat, found.community, found.grid, *found.communities]
        rows = list({id(row): row for row in rows if row is not None}.values())
        session = db.sync_session
        for row in rows:
            state = inspect(row)
            if state.expired_attributes:
                del self._seen[key]  # a command changed it and was rolled back: read again
                return None
            if state.session_id not in (None, session.hash_key):
                return None  # in another transaction's hands
            assert state.key is not None  # committed rows have their identity
            if session.identity_map.get(state.key) not in (None, row):
                return None  # this transaction has loaded the row itself
        if not _matches(found, msg):
            return None
        for row in rows:
            db.add(row)  # the rows as they were committed, attached without a query
        self._seen.move_to_end(key)
        return found

    def keep(self, msg: Incoming, found: Found, version: object) -> None:
        """Remembers a context read at `version`, once its transaction has committed."""
        key = (msg.transport, msg.chat, msg.sender)
        self._seen[key] = Seen(key, version, found)
        self._seen.move_to_end(key)
        while len(self._seen) > KEEP:
            self._seen.popitem(last=False)


def _matches(found: Found, msg: Incoming) -> bool:
    """Whether the message says nothing the stored rows would be updated with
    (bot/people.py `from_message`)."""
    person = found.person
    username = (msg.sender_username or "").lstrip("@").lower() or None
    return (
        found.chat.is_direct == msg.is_direct
        and (username is None or person.username == username)
        and (not msg.sender_name or person.display_name == msg.sender_name)
        and (not msg.is_direct or person.dm_chat == msg.chat)
    )

"""Who is speaking, who is mentioned, and what role they hold where."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.roles import Role
from bot.transports.base import Incoming
from storage import models

if TYPE_CHECKING:
    from bot.config import Config

CONSOLE_ADMIN = "admin"


class People:
    def __init__(self, config: Config) -> None:
        self.config = config

    async def from_message(self, db: AsyncSession, msg: Incoming, now: datetime) -> models.Person:
        """The sender, created on first sight; a placeholder named earlier by @username is
        taken over, so a role set for `@lead` applies when lead first speaks."""
        person = await db.scalar(
            select(models.Person).where(
                models.Person.transport == msg.transport, models.Person.external_id == msg.sender
            )
        )
        username = (msg.sender_username or "").lstrip("@").lower() or None
        if person is None and username:
            person = await db.scalar(
                select(models.Person).where(
                    models.Person.transport == msg.transport,
                    models.Person.username == username,
                    models.Person.external_id.is_(None),
                )
            )
        if person is None:
            person = models.Person(transport=msg.transport, created_at=now)
            db.add(person)
        person.external_id = msg.sender
        if username and person.username != username:
            person.username = username
        if msg.sender_name and person.display_name != msg.sender_name:
            person.display_name = msg.sender_name
        if msg.is_direct and person.dm_chat != msg.chat:
            person.dm_chat = msg.chat
        await db.flush()
        return person

    async def from_mention(
        self, db: AsyncSession, transport: str, word: str, now: datetime
    ) -> models.Person:
        external_id, username = mention_key(transport, word)
        conditions = []
        if external_id:
            conditions.append(models.Person.external_id == external_id)
        if username:
            conditions.append(models.Person.username == username)
        for condition in conditions:
            found = await db.scalar(
                select(models.Person).where(models.Person.transport == transport, condition)
            )
            if found is not None:
                return found
        person = models.Person(
            transport=transport, external_id=external_id, username=username,
            display_name=word.lstrip("@"), created_at=now,
        )
        db.add(person)
        await db.flush()
        return person

    def is_admin(self, person: models.Person) -> bool:
        if person.transport == "console" and person.external_id == CONSOLE_ADMIN:
            return True
        names = {a.lower() for a in self.config.admins}
        if person.external_id and person.external_id.lower() in names:
            return True
        return bool(person.username) and "@" + person.username in names

    async def role(
        self,
        db: AsyncSession,
        person: models.Person,
        community: models.Community | None,
        grid: models.Grid | None,
    ) -> Role:
        if self.is_admin(person):
            return Role.ADMIN
        if community is None:
            return Role.RESIDENT
        rows = (
            await db.scalars(
                select(models.Membership).where(
                    models.Membership.person_id == person.id,
                    models.Membership.community_id == community.id,
                )
            )
        ).all()
        if any(m.role == "secretary" for m in rows):
            return Role.SECRETARY
        for m in rows:
            if grid is not None and m.grid_id == grid.id:
                return Role[m.role.upper()]
        return Role.RESIDENT


def mention_key(transport: str, word: str) -> tuple[str | None, str | None]:
    """`@word` → (external id, username), as far as the transport's naming tells."""
    name = word.lstrip("@")
    if transport == "console":
        return name, name.lower()
    if transport == "matrix":
        return (word if ":" in word else None), (None if ":" in word else name.lower())
    if name.isdigit():  # Telegram numeric id
        return name, None
    return None, name.lower()

"""Who is speaking, who is mentioned, and what role they hold where."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.privacy import Viewer
from bot.roles import Role
from bot.transports.base import Incoming, Transport
from storage import models

if TYPE_CHECKING:
    from bot.config import Config

class People:
    def __init__(self, config: Config, transports: Mapping[str, Transport]) -> None:
        self.config = config
        # The running transports: each owns its ID syntax (`mention`) and may name built-in
        # admins (the console's `admin`).
        self.transports = transports

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
        running = self.transports.get(transport)
        if running is not None:
            external_id, username = running.mention(word)
        else:  # a transport not running here: the word is a username
            external_id, username = None, word.lstrip("@").lower()
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
        running = self.transports.get(person.transport)
        if running is not None and person.external_id in running.builtin_admins:
            return True
        names = {a.lower() for a in self.config.admins}
        if person.external_id and person.external_id.lower() in names:
            return True
        return bool(person.username) and "@" + person.username in names

    async def standing(self, db: AsyncSession, person: models.Person) -> Standing:
        """Every role the person holds, in one query: what the access rule and the privacy
        rule read for each message."""
        memberships = (
            await db.scalars(
                select(models.Membership)
                .where(models.Membership.person_id == person.id)
                .order_by(models.Membership.id)
            )
        ).all()
        return Standing(person.id, self.is_admin(person), tuple(memberships))

    async def role(
        self,
        db: AsyncSession,
        person: models.Person,
        community: models.Community | None,
        grid: models.Grid | None,
    ) -> Role:
        standing = await self.standing(db, person)
        return standing.role(community.id if community else None, grid.id if grid else None)


@dataclass(frozen=True)
class Standing:
    """A person's roles everywhere: installation admin, secretary of communities, leader or
    member of grids."""

    person_id: int
    admin: bool
    memberships: tuple[models.Membership, ...]

    def role(self, community_id: int | None, grid_id: int | None) -> Role:
        """The role in a community, in a grid of it (or in no grid: the community level)."""
        if self.admin:
            return Role.ADMIN
        if community_id is None:
            return Role.RESIDENT
        mine = [m for m in self.memberships if m.community_id == community_id]
        if any(m.role == "secretary" for m in mine):
            return Role.SECRETARY
        for m in mine:
            if grid_id is not None and m.grid_id == grid_id:
                return Role[m.role.upper()]
        return Role.RESIDENT

    def top_role(self, community_id: int | None) -> Role:
        """The highest role anywhere in the community (a leader of some grid is a leader)."""
        if self.admin:
            return Role.ADMIN
        roles = [Role[m.role.upper()] for m in self.memberships if m.community_id == community_id]
        return max(roles, default=Role.RESIDENT)

    def communities(self) -> list[int]:
        """The communities the person works in, first joined first."""
        return list(dict.fromkeys(m.community_id for m in self.memberships))

    def home_grid(self, community_id: int) -> int | None:
        """The grid a direct chat acts in: the one joined last in that community."""
        grids = [m.grid_id for m in self.memberships if m.community_id == community_id and m.grid_id]
        return grids[-1] if grids else None

    def viewer(self) -> Viewer:
        """The person as the reader of a direct message."""
        return Viewer(
            person_id=self.person_id,
            admin=self.admin,
            secretary_of=frozenset(m.community_id for m in self.memberships if m.role == "secretary"),
            leader_of=frozenset(m.grid_id for m in self.memberships if m.role == "leader" and m.grid_id),
        )

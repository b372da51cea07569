"""What a command or job sees: the database session, the clock, who and where, and ways to
answer. Messages are stored in the outbox inside the same transaction and delivered after
it commits, so an accepted command never loses its reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import Reject
from bot.roles import Role
from bot.transports.base import Incoming
from storage import models

if TYPE_CHECKING:
    from bot.app import App
    from bot.registry import Command

# How long the instance that queued a message has to deliver it before another may.
DELIVERY_LEASE = timedelta(minutes=2)


@dataclass
class Actions:
    """The part shared by commands and scheduled jobs."""

    app: App
    db: AsyncSession
    now: datetime
    community: models.Community | None = None
    queued: list[models.OutboxMessage] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def lang(self) -> str:
        return self.community.lang if self.community else self.app.config.lang

    @property
    def tz(self) -> str:
        return self.community.tz if self.community else self.app.config.tz

    @property
    def today(self) -> date:
        return self.now.astimezone(ZoneInfo(self.tz)).date()

    def local(self, when: datetime) -> datetime:
        return when.astimezone(ZoneInfo(self.tz))

    def render(self, template: str, /, *, private: bool, **values: Any) -> str:
        return self.app.renderer.render(
            self.lang, template, private=private, tz=self.tz, now=self.now, **values
        )

    def emit(self, event: str, **values: Any) -> None:
        """Announces a change to the hooks declared with `@on(event)`, once this transaction
        has committed (so they can read the change, and never see one that was undone)."""
        self.events.append((event, values))

    def may_show_private(self, chat: models.Chat) -> bool:
        """The one privacy rule: residents' health details show only in direct chats and in
        the community's HQ chat."""
        if chat.is_direct:
            return True
        return self.community is not None and chat.id == self.community.hq_chat_id

    def post(
        self,
        chat: models.Chat,
        template: str,
        /,
        *,
        buttons: list[dict[str, str]] | None = None,
        ref: str | None = None,
        pin: bool = False,
        file: tuple[str, bytes] | None = None,
        reply_to: str | None = None,
        **values: Any,
    ) -> models.OutboxMessage:
        """Queues a message to a chat, rendered for that chat's audience."""
        text = self.render(template, private=self.may_show_private(chat), **values)
        return self._queue(
            transport=chat.transport, chat=chat.external_id, text=text, buttons=buttons or [],
            ref=ref, pin=pin, file=file, reply_to=reply_to,
        )

    def tell(
        self,
        person: models.Person,
        template: str,
        /,
        *,
        origin: models.Chat | None = None,
        file: tuple[str, bytes] | None = None,
        buttons: list[dict[str, str]] | None = None,
        **values: Any,
    ) -> models.OutboxMessage:
        """Queues a direct message to a person. If it cannot be delivered (they never opened
        a chat with the bot), `origin` is told so, without the message's content."""
        text = self.render(template, private=True, **values)
        return self._queue(
            transport=person.transport, person_id=person.id, text=text, file=file,
            buttons=buttons or [],
            origin_chat=origin.external_id if origin and not origin.is_direct else None,
        )

    def _queue(self, *, file: tuple[str, bytes] | None = None, **fields: Any) -> models.OutboxMessage:
        row = models.OutboxMessage(
            created_at=self.now,
            lease_owner=self.app.instance_id,
            lease_until=self.now + DELIVERY_LEASE,
            community_id=self.community.id if self.community else None,
            file_name=file[0] if file else None,
            file_data=file[1] if file else None,
            **fields,
        )
        self.db.add(row)
        self.queued.append(row)
        return row


@dataclass
class Context(Actions):
    """A command being handled."""

    message: Incoming | None = None
    person: models.Person | None = None
    chat: models.Chat | None = None
    grid: models.Grid | None = None
    role: Role = Role.RESIDENT
    command: Command | None = None
    refs: list[str] = field(default_factory=list)
    extra_changes: list[dict[str, Any]] = field(default_factory=list)

    def reply(self, template: str, /, **values: Any) -> models.OutboxMessage:
        """Answers in this chat; in a group, as a reply to the command, so that in a busy
        chat it is clear which command an answer belongs to."""
        reply_to = None if self.chat.is_direct else self.message.message_id
        return self.post(self.chat, template, reply_to=reply_to, **values)

    def fail(self, template: str, /, **values: Any) -> Reject:
        """`raise ctx.fail(...)`: a clear refusal; nothing the command wrote is kept."""
        return Reject(template, **values)

    def require_community(self) -> models.Community:
        if self.community is None:
            raise Reject("core/no_community")
        return self.community

    def require_grid(self) -> models.Grid:
        if self.grid is None:
            raise Reject("core/no_grid")
        return self.grid

    def ref(self, *refs: str) -> None:
        """Names the items this command touched (`E7`) for /history."""
        self.refs.extend(refs)

    def record(self, table: str, row_id: int, before: dict, after: dict) -> None:
        """Adds to the audit entry a write made by a bulk statement (the ORM did not see it)."""
        self.extra_changes.append(
            {"table": table, "id": row_id, "op": "update", "before": before, "after": after}
        )


@dataclass
class JobContext(Actions):
    """A scheduled job's view: no sender, no chat of origin."""

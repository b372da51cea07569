"""Delivery of stored outgoing messages through the transport each belongs to."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sqlalchemy import select

from bot.transports.base import CannotDeliver, Outgoing
from storage import models

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, app: App) -> None:
        self.app = app
        # One deliverer at a time keeps each chat's messages in the order they were queued.
        self._lock = asyncio.Lock()

    async def deliver(self, ids: list[int] | None = None) -> None:
        """Sends the given pending messages (or every pending one), oldest first."""
        if ids == []:
            return
        async with self._lock:
            query = select(models.OutboxMessage).where(
                models.OutboxMessage.sent_at.is_(None), models.OutboxMessage.error.is_(None)
            )
            if ids is not None:
                query = query.where(models.OutboxMessage.id.in_(ids))
            async with self.app.db.transaction() as db:
                rows = (await db.scalars(query.order_by(models.OutboxMessage.id))).all()
            for row in rows:
                await self._send(row)

    async def _send(self, row: models.OutboxMessage) -> None:
        transport = self.app.transports.get(row.transport)
        if transport is None:
            return  # that transport is not running now; the row waits for it
        message = self._outgoing(row, transport.capabilities)
        try:
            if row.person_id is not None:
                async with self.app.db.transaction() as db:
                    person = await db.get(models.Person, row.person_id)
                sent = await transport.send_direct(person.external_id, person.dm_chat, message)
            else:
                sent = await transport.send(row.chat, message)
        except CannotDeliver as error:
            await self._mark(row, error=str(error) or "cannot deliver")
            if row.origin_chat:
                await self._tell_origin(row)
            return
        except Exception:
            log.exception("delivery of outbox message %s failed; will retry", row.id)
            return
        await self._mark(row, sent=sent)

    def _outgoing(self, row: models.OutboxMessage, caps) -> Outgoing:
        text = row.text
        buttons = tuple(row.buttons or ())
        if buttons and not (caps.buttons or caps.reactions):
            # Degrade gracefully: show what each button would have typed.
            text += "\n" + "  ".join(f"[{b['label']}: {b['command']}]" for b in buttons)
        return Outgoing(
            text=text, buttons=buttons, file_name=row.file_name, file_data=row.file_data,
            pin=row.pin, reply_to=row.reply_to, key=f"gridbot-{row.id}",
        )

    async def _mark(self, row: models.OutboxMessage, *, sent=None, error: str | None = None) -> None:
        async with self.app.db.transaction() as db:
            stored = await db.get(models.OutboxMessage, row.id)
            stored.error = error
            if sent is not None:
                stored.sent_at = self.app.clock.now()
                stored.file_data = None  # delivered files need not stay in the database
                if row.buttons and row.community_id:
                    for message_id in sent.message_ids:
                        db.add(models.PostedMessage(
                            transport=row.transport, chat=sent.chat, message=message_id,
                            community_id=row.community_id, ref=row.ref, buttons=row.buttons,
                        ))

    async def _tell_origin(self, row: models.OutboxMessage) -> None:
        """The person never opened a direct chat with the bot: say so where they were."""
        async with self.app.db.transaction() as db:
            person = await db.get(models.Person, row.person_id)
            community = await db.get(models.Community, row.community_id) if row.community_id else None
            lang = community.lang if community else self.app.config.lang
            text = self.app.renderer.render(
                lang, "core/dm_failed", private=False, person=person.label,
            )
            notice = models.OutboxMessage(
                transport=row.transport, chat=row.origin_chat, text=text,
                community_id=row.community_id, created_at=self.app.clock.now(),
            )
            db.add(notice)
        await self._send(notice)

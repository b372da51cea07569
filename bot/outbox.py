"""Delivery of stored outgoing messages through the transport each belongs to.

Rows are written by the command or job that caused them, in its transaction; delivery happens
after that commits. What was sent (or failed for good) is recorded in one transaction per
batch; rows left pending are retried by a periodic job and at start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, true, update

from bot.context import DELIVERY_LEASE
from bot.transports.base import CannotDeliver, Outgoing, Sent
from storage import models

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)


class Outbox:
    def __init__(self, app: App) -> None:
        self.app = app
        # Each chat's messages go out in the order they were queued; different chats do not
        # wait for each other (one group held back by Telegram's per-group limit must not
        # delay every other chat).
        self._chat_locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._in_flight: set[int] = set()
        self._background: set[asyncio.Task] = set()
        self._retry_needed = True  # rows may be pending from before a restart

    async def retry(self) -> None:
        """The periodic job: sends what is still pending, if anything may be."""
        if self._retry_needed:
            self._retry_needed = False
            await self.deliver()

    async def deliver(self, rows: Sequence[models.OutboxMessage] | None = None) -> None:
        """Sends the given rows (just committed), or every pending row, oldest first."""
        if rows is None:
            rows = await self._claim_pending()
        rows = [row for row in rows if row.id not in self._in_flight]
        if not rows:
            return
        self._in_flight.update(row.id for row in rows)
        try:
            notices = await self._deliver(rows)
        finally:
            self._in_flight.difference_update(row.id for row in rows)
        if notices:
            await self._deliver(notices)

    def deliver_soon(self, rows: Sequence[models.OutboxMessage]) -> None:
        """Delivers in the background: for transports that should go on reading updates
        while a reply waits for a rate limit (the rows are committed, so none is lost)."""
        if rows:
            task = asyncio.create_task(self.deliver(rows))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def idle(self) -> None:
        """Waits until background deliveries are done (before stopping)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _claim_pending(self) -> list[models.OutboxMessage]:
        """Takes the pending rows no other instance is delivering (its lease ran out)."""
        now = self.app.clock.now()
        table = models.OutboxMessage
        async with self.app.db.transaction() as db:
            ids = (
                await db.scalars(
                    update(table)
                    .where(
                        table.sent_at.is_(None),
                        table.error.is_(None),
                        or_(
                            table.lease_until.is_(None),
                            table.lease_until < now,
                            table.lease_owner == self.app.instance_id,
                        ),
                    )
                    .values(lease_owner=self.app.instance_id, lease_until=now + DELIVERY_LEASE)
                    .returning(table.id)
                )
            ).all()
            # Rows another instance holds: look again later, in case it dies with them.
            held = await db.scalar(
                select(table.id).where(table.sent_at.is_(None), table.error.is_(None)).limit(1)
                .where(table.id.not_in(ids) if ids else true())
            )
            if held is not None:
                self._retry_needed = True
            if not ids:
                return []
            return list(
                (await db.scalars(select(table).where(table.id.in_(ids)).order_by(table.id))).all()
            )

    async def _deliver(self, rows: Sequence[models.OutboxMessage]) -> list[models.OutboxMessage]:
        people = await self._recipients(rows)
        by_chat: dict[tuple[str, str], list[models.OutboxMessage]] = defaultdict(list)
        for row in rows:
            by_chat[(row.transport, row.chat or f"person:{row.person_id}")].append(row)
        notices = await asyncio.gather(
            *(self._deliver_chat(key, chat_rows, people) for key, chat_rows in by_chat.items())
        )
        return [notice for chat_notices in notices for notice in chat_notices]

    async def _deliver_chat(self, key, rows, people) -> list[models.OutboxMessage]:
        """Sends one chat's rows in order and records them before the next delivery to that
        chat may start: whatever went out is marked sent before anything after it is sent."""
        sent: list[tuple[models.OutboxMessage, Sent]] = []
        failed: list[tuple[models.OutboxMessage, str]] = []
        async with self._chat_locks[key]:
            for row in rows:
                transport = self.app.transports.get(row.transport)
                if transport is None:
                    self._retry_needed = True  # that transport is not running now; the row waits
                    continue
                message = self._outgoing(row, transport.capabilities)
                try:
                    if row.person_id is not None:
                        person = people[row.person_id]
                        result = await transport.send_direct(
                            person.external_id, person.dm_chat, message
                        )
                    else:
                        result = await transport.send(row.chat, message)
                except CannotDeliver as error:
                    failed.append((row, str(error) or "cannot deliver"))
                except Exception:
                    log.exception("delivery of outbox message %s failed; will retry", row.id)
                    self._retry_needed = True
                    break  # keep this chat's order: the rest waits for the retry
                else:
                    sent.append((row, result))
            return await self._record(sent, failed, people)

    async def _recipients(self, rows) -> dict[int, models.Person]:
        ids = {row.person_id for row in rows if row.person_id is not None}
        if not ids:
            return {}
        async with self.app.db.transaction() as db:
            found = await db.scalars(select(models.Person).where(models.Person.id.in_(ids)))
            return {person.id: person for person in found}

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

    async def _record(self, sent, failed, people) -> list[models.OutboxMessage]:
        """Marks the batch in one transaction; returns notices to send for direct messages that
        could not be delivered (the person never opened a chat with the bot)."""
        if not sent and not failed:
            return []
        now = self.app.clock.now()
        notices: list[models.OutboxMessage] = []
        async with self.app.db.transaction() as db:
            if sent:
                await db.execute(
                    update(models.OutboxMessage)
                    .where(models.OutboxMessage.id.in_([row.id for row, _ in sent]))
                    .values(sent_at=now, file_data=None)  # delivered files need not stay
                )
            for row, result in sent:
                if row.buttons and row.community_id:
                    db.add_all(
                        models.PostedMessage(
                            transport=row.transport, chat=result.chat, message=message_id,
                            community_id=row.community_id, ref=row.ref, buttons=row.buttons,
                        )
                        for message_id in result.message_ids
                    )
            for row, error in failed:
                await db.execute(
                    update(models.OutboxMessage)
                    .where(models.OutboxMessage.id == row.id)
                    .values(error=error)
                )
                if row.origin_chat:
                    notices.append(await self._dm_failed_notice(db, row, people[row.person_id], now))
        return notices

    async def _dm_failed_notice(self, db, row, person: models.Person, now) -> models.OutboxMessage:
        community = await db.get(models.Community, row.community_id) if row.community_id else None
        text = self.app.renderer.render(
            community.lang if community else self.app.config.lang,
            "core/dm_failed", person=person.label, transport=row.transport,
        )
        notice = models.OutboxMessage(
            transport=row.transport, chat=row.origin_chat, text=text,
            community_id=row.community_id, created_at=now,
            lease_owner=self.app.instance_id, lease_until=now + DELIVERY_LEASE,
        )
        db.add(notice)
        await db.flush()
        return notice

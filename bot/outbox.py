"""Delivery of stored outgoing messages through the transport each belongs to.

Rows are written by the command or job that caused them, in its transaction; delivery happens
after that commits. Each chat has a queue, drained by one task: its messages go out in the
order they were created, and different chats do not wait for each other. What went out is
marked so in the next transaction the bot commits anyway (or in one of its own a moment
later), in the order it went out: after a crash, only the last messages of a chat can go out
again, still in order. A message with buttons is recorded before its chat's next one goes
out (the reactions that answer it are looked up by it). Rows left pending (a transport was
down) are retried by a periodic job and at start-up, oldest first; a chat whose delivery
failed sends nothing newer until the retry has sent the older rows.

Rate limits: a transport may give each chat a `Budget` (Telegram: 20 messages a minute per
group), or say that the server refused a send for now (`RateLimited`: Matrix's rc_message).
While the budget allows, each reply goes out on its own, as soon as it is committed. When it
is spent, the replies that pile up for that chat meanwhile go out merged, in order, as few
messages as fit the transport's size limit, each item headed by the command it answers.
Messages that must stand alone are never
merged: pins (announcements), files, direct messages (alerts go there), anything too long
for one message. An item's buttons stay: one button per item, its label naming the item
(`✋ 认领 E7`), on transports with buttons; on transports without (Matrix reactions could
not tell the items apart) the commands are listed in the text.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, or_, select, true, update

from bot.context import DELIVERY_LEASE
from bot.transports.base import (
    Budget,
    CannotDeliver,
    Capabilities,
    Outgoing,
    RateLimited,
    Sent,
    split_text,
)
from storage import models

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

MAX_MERGED = 50  # items in one merged message
MAX_MERGED_BUTTONS = 30  # buttons on one merged message (an inline keyboard has its limits)
MARK_PAUSE = 1.0  # seconds before marking sent rows again after the database failed
ITEM_MARK = "↩"  # heads each item of a merged message: `↩ @wang /errand`

ChatKey = tuple[str, str]
_OUTBOX = models.table(models.OutboxMessage)
# Built once: it runs after every reply (once per row: cheaper than an IN list, which is
# expanded anew each time). Delivered files need not stay.
_MARK_SENT = (
    update(_OUTBOX).where(_OUTBOX.c.id == bindparam("row_id"))
    .values(sent_at=bindparam("now"), file_data=None)
)


@dataclass
class _Send:
    """One message to send: a row alone, or several rows merged."""

    rows: list[models.OutboxMessage]
    message: Outgoing
    person: models.Person | None = None


class Outbox:
    def __init__(self, app: App) -> None:
        self.app = app
        self._queues: dict[ChatKey, deque[models.OutboxMessage]] = {}
        self._workers: dict[ChatKey, asyncio.Task] = {}
        self._in_flight: set[int] = set()
        # Chats whose delivery failed: nothing newer goes out before the retry sent the rest.
        self._blocked: set[ChatKey] = set()
        self._caused: dict[int, list[int]] = {}  # row → the notices its failure queued
        self._changed = asyncio.Condition()
        self._held = False
        self._retry_needed = True  # rows may be pending from before a restart
        # What the chats' tasks sent, recorded together: one transaction for every chat
        # that finished a send meanwhile (a fan-out to 1,000 chats is not 1,000 commits).
        self._to_record: list[tuple[list, list, asyncio.Future]] = []
        self._recorder: asyncio.Task | None = None
        # Rows sent and not yet marked so, in the order they went out. Their marks ride on
        # the next transaction (storage/db.py `ride`), not one of their own: a reply costs
        # no commit. Marks commit in that order, so after a crash the rows sent again are
        # the last of each chat, still in order.
        self._unmarked: dict[int, datetime] = {}  # row → when it went out
        self._marker: asyncio.Task | None = None

    # -- entry points ------------------------------------------------------------------------

    async def retry(self) -> None:
        """The periodic job: sends what is still pending, if anything may be."""
        if self._retry_needed:
            self._retry_needed = False
            await self.deliver()

    async def deliver(self, rows: Sequence[models.OutboxMessage] | None = None) -> None:
        """Sends the given rows (just committed), or every pending row, oldest first, and
        waits until they are out (or failed, or left for a retry)."""
        if rows is None:
            rows = await self.claim_pending()
        await self.wait(self.enqueue(rows))

    def deliver_soon(self, rows: Sequence[models.OutboxMessage]) -> None:
        """Queues for delivery in the background: for transports that should go on reading
        updates while a reply waits for a rate limit (the rows are committed, so none is lost)."""
        self.enqueue(rows)

    def hold(self) -> None:
        """At start-up: queue, but send nothing until `release` (the transports are up)."""
        self._held = True

    def release(self) -> None:
        self._held = False
        for key in list(self._queues):
            self._start(key)

    async def wait(self, ids: Iterable[int]) -> None:
        """Waits until these rows, and the notices their failures caused, are done with."""
        pending = set(ids)
        while pending:
            async with self._changed:
                await self._changed.wait_for(partial(self._all_done, pending))
            pending = {n for i in pending for n in self._caused.pop(i, ())}

    def _all_done(self, ids: set[int]) -> bool:
        return not (ids & self._in_flight)

    async def idle(self) -> None:
        """Waits until every queued message is done with and marked (before stopping)."""
        while self._workers or self._marker:
            self.app.db.ride_now()
            await asyncio.gather(*list(self._workers.values()), *filter(None, [self._marker]),
                                 return_exceptions=True)

    # -- queues ------------------------------------------------------------------------------

    def enqueue(self, rows: Iterable[models.OutboxMessage]) -> list[int]:
        """Appends rows to their chats' queues (in the order given); returns their ids."""
        ids = []
        for row in rows:
            if row.id in self._in_flight or row.id in self._unmarked:
                continue  # queued or sent already (the retry found a row being sent)
            key = _chat_key(row)
            if key in self._blocked:
                self._retry_needed = True  # older rows of this chat go first, at the retry
                continue
            self._in_flight.add(row.id)
            ids.append(row.id)
            self._queues.setdefault(key, deque()).append(row)
            self._start(key)
        return ids

    def _start(self, key: ChatKey) -> None:
        if self._held or key in self._workers or not self._queues.get(key):
            return
        task = asyncio.create_task(self._drain(key), name=f"outbox {key[0]}:{key[1]}")
        self._workers[key] = task

    async def _drain(self, key: ChatKey) -> None:
        queue = self._queues[key]
        waited = False
        send: _Send | None = None
        try:
            while queue:
                transport = self.app.transports.get(key[0])
                if transport is None:
                    # That transport is not running now: the rows wait for the retry.
                    self._retry_needed = True
                    await self._done(list(queue), [])
                    queue.clear()
                    break
                send = await self._next(transport, key, queue, waited)
                waited = False
                try:
                    result = await self._send(transport, send)
                except RateLimited as limit:
                    # Nothing went out: wait, then send what piled up meanwhile, merged.
                    log.info("outbox: %s rate limited for %.1f s", key, limit.retry_after)
                    queue.extendleft(reversed(send.rows))
                    await asyncio.sleep(limit.retry_after)
                    waited = True
                    continue
                except CannotDeliver as error:
                    notices = await self._record([], [(send, str(error) or "cannot deliver")])
                except Exception:
                    log.exception("delivery of outbox message(s) %s failed; will retry",
                                  [row.id for row in send.rows])
                    self._retry_needed = True
                    self._blocked.add(key)  # keep this chat's order: the rest waits too
                    rest = send.rows + list(queue)
                    queue.clear()
                    await self._done(rest, [])
                    break
                else:
                    if _posted(send, result):
                        notices = await self._record([(send, result)], [])
                    else:
                        self._mark_soon(send.rows)
                        notices = []
                await self._done(send.rows, notices)
        except Exception:
            log.exception("outbox worker for %s failed", key)
            self._retry_needed = True
            await self._done((send.rows if send else []) + list(queue), [])
            queue.clear()
        finally:
            del self._workers[key]
            if not queue:
                self._queues.pop(key, None)
            elif not self._held:
                self._start(key)  # rows arrived while this task was finishing

    async def _done(self, rows: list[models.OutboxMessage], notices) -> None:
        for row in rows:
            if notices:
                self._caused[row.id] = [n.id for n in notices]
        self.enqueue(notices)
        self._in_flight.difference_update(row.id for row in rows)
        async with self._changed:
            self._changed.notify_all()

    # -- what to send next -------------------------------------------------------------------

    async def _next(
        self, transport, key: ChatKey, queue: deque[models.OutboxMessage], waited: bool
    ) -> _Send:
        """Takes the next message off the queue: the first row alone while the budget allows,
        or, when it had to wait (for the budget, or the server said so), everything mergeable
        that piled up."""
        caps: Capabilities = transport.capabilities
        first = queue[0]
        person = None
        if first.person_id is not None:
            person = await self._recipient(first.person_id)
        alone = self._outgoing(first, caps)
        budget: Budget | None = _budget(transport, first.chat) if first.chat else None
        if budget is None:
            if waited and len(queue) > 1 and _mergeable(first, caps):
                merged = self._merge(queue, caps)
                if merged is not None:
                    return merged
            queue.popleft()
            return _Send([first], alone, person)
        cost = _calls(transport, alone)
        while (delay := budget.delay(cost)) > 0:  # a budget may be shared by several chats
            waited = True
            await asyncio.sleep(delay)
        if waited and len(queue) > 1 and _mergeable(first, caps):
            merged = self._merge(queue, caps)
            if merged is not None:
                budget.spend(_calls(transport, merged.message))
                return merged
        queue.popleft()
        budget.spend(cost)
        return _Send([first], alone, person)

    def _merge(self, queue: deque[models.OutboxMessage], caps: Capabilities) -> _Send | None:
        """The longest run of mergeable rows at the head of the queue that fits in one
        message; None if that is just the first row."""
        rows: list[models.OutboxMessage] = []
        texts: list[str] = []
        buttons: list[dict[str, str]] = []
        length = 0
        for row in queue:
            if not _mergeable(row, caps) or len(rows) >= MAX_MERGED:
                break
            item, item_buttons = _item(row, caps)
            added = len(item) + (2 if texts else 0)
            too_many = len(buttons) + len(item_buttons) > MAX_MERGED_BUTTONS
            if length + added > caps.max_length or too_many:
                break
            rows.append(row)
            texts.append(item)
            buttons += item_buttons
            length += added
        if len(rows) < 2:
            return None
        for _ in rows:
            queue.popleft()
        key = f"gridbot-{rows[0].id}-{rows[-1].id}"
        return _Send(rows, Outgoing(text="\n\n".join(texts), buttons=tuple(buttons), key=key))

    def _outgoing(self, row: models.OutboxMessage, caps: Capabilities) -> Outgoing:
        text = row.text
        buttons = tuple(row.buttons or ())
        if buttons and not (caps.buttons or caps.reactions):
            # Degrade gracefully: show what each button would have typed.
            text += "\n" + _listed(buttons)
        return Outgoing(
            text=text, buttons=buttons, file_name=row.file_name, file_data=row.file_data,
            pin=row.pin, reply_to=row.reply_to, key=f"gridbot-{row.id}",
        )

    async def _send(self, transport, send: _Send) -> Sent:
        if send.rows[0].person_id is not None:
            if send.person is None:
                raise CannotDeliver("no such person")
            return await transport.send_direct(
                send.person.external_id, send.person.dm_chat, send.message
            )
        return await transport.send(send.rows[0].chat, send.message)

    async def _recipient(self, person_id: int) -> models.Person | None:
        async with self.app.db.transaction() as db:
            return await db.get(models.Person, person_id)

    # -- the database ------------------------------------------------------------------------

    async def claim_pending(self) -> list[models.OutboxMessage]:
        """Takes the pending rows no other instance is delivering (its lease ran out),
        oldest first; a chat blocked by a failure may send again."""
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
            rows = []
            if ids:
                rows = list((await db.scalars(
                    select(table).where(table.id.in_(ids)).order_by(table.id)
                )).all())
        for row in rows:
            if row.id not in self._in_flight:
                self._blocked.discard(_chat_key(row))
        return rows

    async def _record(self, sent: list[tuple[_Send, Sent]], failed: list[tuple[_Send, str]]):
        """Marks what went out (or failed for good), together with what other chats' tasks
        finished meanwhile; returns the notices to send for direct messages that could not
        be delivered (the person never opened a chat with the bot)."""
        done = asyncio.get_running_loop().create_future()
        self._to_record.append((sent, failed, done))
        if self._recorder is None:
            self._recorder = asyncio.create_task(self._record_batches())
        return await done

    async def _record_batches(self) -> None:
        try:
            while self._to_record:
                batch, self._to_record = self._to_record, []
                try:
                    notices = await self._write(
                        [item for sent, _, _ in batch for item in sent],
                        [item for _, failed, _ in batch for item in failed],
                    )
                except Exception as error:
                    for _, _, done in batch:
                        done.set_exception(error)
                    continue
                for sent, failed, done in batch:
                    rows = {row.id for send, _ in sent + failed for row in send.rows}
                    done.set_result([n for origin, n in notices if origin in rows])
        finally:
            self._recorder = None

    def _mark_soon(self, rows: list[models.OutboxMessage]) -> None:
        now = self.app.clock.now()
        self._unmarked.update((row.id, now) for row in rows)
        if self._marker is None:
            self._marker = asyncio.create_task(self._mark_unmarked(), name="outbox marks")

    async def _mark_unmarked(self) -> None:
        try:
            while self._unmarked:
                try:
                    marked = await self.app.db.ride(self._mark_in)
                except Exception:
                    log.exception("outbox: could not mark %d sent row(s); trying again",
                                  len(self._unmarked))
                    await asyncio.sleep(MARK_PAUSE)
                    continue
                for row_id in marked:
                    del self._unmarked[row_id]
        finally:
            self._marker = None

    async def _mark_in(self, session) -> list[int]:
        marked = list(self._unmarked.items())
        conn = await session.connection()
        await conn.execute(_MARK_SENT, [{"row_id": row_id, "now": at} for row_id, at in marked])
        return [row_id for row_id, _ in marked]

    async def _write(self, sent: list[tuple[_Send, Sent]], failed: list[tuple[_Send, str]]):
        """Rows marked sent or failed, in SQL, in the transaction of the commands being
        handled meanwhile if there are any (storage/db.py `grouped`); [(row id, notice)] for
        failed direct messages whose command came from a group."""
        return await self.app.db.grouped(partial(self._write_in, sent, failed))

    async def _write_in(self, sent, failed, session) -> list[tuple[int, models.OutboxMessage]]:
        now = self.app.clock.now()
        table = models.table(models.OutboxMessage)
        notices: list[tuple[int, models.OutboxMessage]] = []
        conn = await session.connection()
        delivered = [row.id for send, _ in sent for row in send.rows]
        if delivered:
            await conn.execute(_MARK_SENT, [{"row_id": i, "now": now} for i in delivered])
        posted = [item for send, result in sent for item in _posted(send, result)]
        if posted:
            await conn.execute(insert(models.table(models.PostedMessage)), posted)
        for send, error in failed:
            await conn.execute(
                update(table).where(table.c.id.in_([row.id for row in send.rows]))
                .values(error=error)
            )
            for row in send.rows:
                if row.origin_chat and send.person is not None:
                    notice = await self._dm_failed_notice(conn, row, send.person, now)
                    notices.append((row.id, notice))
        return notices

    async def _dm_failed_notice(
        self, conn, row, person: models.Person, now
    ) -> models.OutboxMessage:
        communities = models.table(models.Community)
        lang = None
        if row.community_id:
            lang = await conn.scalar(
                select(communities.c.lang).where(communities.c.id == row.community_id)
            )
        text = self.app.renderer.render(
            lang or self.app.config.lang,
            "core/dm_failed", person=person.label, transport=row.transport,
        )
        values = dict(
            transport=row.transport, chat=row.origin_chat, text=text, buttons=[], pin=False,
            community_id=row.community_id, created_at=now,
            lease_owner=self.app.instance_id, lease_until=now + DELIVERY_LEASE,
        )
        notice_id = await conn.scalar(
            insert(models.table(models.OutboxMessage)).values(**values)
            .returning(models.table(models.OutboxMessage).c.id)
        )
        return models.OutboxMessage(id=notice_id, **values)


def _chat_key(row: models.OutboxMessage) -> ChatKey:
    return (row.transport, row.chat or f"person:{row.person_id}")


def _posted(send: _Send, result: Sent) -> list[dict[str, Any]]:
    """What to remember of a message sent with buttons, for the reactions or presses that
    answer it: recorded before the next message of its chat goes out."""
    first = send.rows[0]
    if not (send.message.buttons and first.community_id):
        return []
    refs = {row.ref for row in send.rows if row.buttons}
    return [
        dict(transport=first.transport, chat=result.chat, message=message_id,
             community_id=first.community_id, ref=refs.pop() if len(refs) == 1 else None,
             buttons=list(send.message.buttons))
        for message_id in result.message_ids
    ]


def _budget(transport, chat: str) -> Budget | None:
    budget = getattr(transport, "budget", None)
    return budget(chat) if budget is not None else None


def _calls(transport, message: Outgoing) -> int:
    """What a message costs against a rate limit: one call per part, file, pin (and, where
    buttons are reactions, per reaction)."""
    calls = getattr(transport, "calls", None)
    if calls is not None:
        return calls(message)
    caps = transport.capabilities
    parts = len(split_text(message.text, caps.max_length)) if message.text.strip() else 0
    reactions = len(message.buttons) if caps.reactions and not caps.buttons else 0
    return max(1, parts + bool(message.file_name) + message.pin + reactions)


def _mergeable(row: models.OutboxMessage, caps: Capabilities) -> bool:
    """Whether a row may go out merged with others: a plain text message to a chat."""
    return (
        row.chat is not None and row.person_id is None and not row.pin
        and row.file_name is None and len(row.text) < caps.max_length // 2
    )


def _item(row: models.OutboxMessage, caps: Capabilities) -> tuple[str, list[dict[str, str]]]:
    """A row as one item of a merged message: headed by the command it answers; its buttons
    labelled with the item (one per item), or listed as commands where there are none."""
    text = f"{ITEM_MARK} {row.answers}\n{row.text}" if row.answers else row.text
    buttons = [dict(b) for b in row.buttons or ()]
    if buttons and caps.buttons:
        for button in buttons:
            if row.ref and row.ref not in button["label"]:
                button["label"] = f"{button['label']} {row.ref}"
        return text, buttons
    if buttons:
        text += "\n" + _listed(buttons)
    return text, []


def _listed(buttons: Sequence[dict[str, Any]]) -> str:
    return "  ".join(f"[{b['label']}: {b['command']}]" for b in buttons)

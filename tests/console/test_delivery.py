"""Nothing accepted is lost, nothing is handled twice, nothing crashes the bot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import event, func, select

from bot.api import Reject, Text
from bot.registry import REGISTRY, command
from bot.roles import Role
from bot.transports.base import BaseTransport, CannotDeliver, Capabilities, Incoming, Outgoing, Sent
from storage import models


@dataclass
class RecordingTransport(BaseTransport):
    """A network transport stand-in that records sends (and can refuse direct messages)."""

    name: str = "telegram"
    capabilities: Capabilities = field(default_factory=lambda: Capabilities(buttons=True))
    sent: list[tuple[str, str]] = field(default_factory=list)
    refuse_direct: bool = True

    async def start(self, app):
        pass

    async def stop(self):
        pass

    async def send(self, chat: str, message: Outgoing) -> Sent:
        self.sent.append((chat, message.text))
        return Sent(chat=chat, message_ids=[str(len(self.sent))])

    async def send_direct(self, user, dm_chat, message):
        if self.refuse_direct:
            raise CannotDeliver("Forbidden: bot can't initiate conversation with a user")
        return await self.send(f"dm:{user}", message)


def telegram(text: str, *, chat="-100", sender="42", username="alice", key=None) -> Incoming:
    return Incoming(transport="telegram", chat=chat, sender=sender, text=text,
                    sender_username=username, sender_name="Alice", dedupe_key=key)


async def test_redelivered_message_is_handled_once(bot):
    transport = RecordingTransport()
    bot.app.transports["telegram"] = transport
    for _ in range(3):
        await bot.app.handle(telegram("/help", key="telegram:7"))
    assert len(transport.sent) == 1
    async with bot.app.db.transaction() as db:
        assert await db.scalar(select(func.count()).select_from(models.ProcessedMessage)) == 1


async def test_network_transport_without_admins_refuses_community_and_says_how(bot):
    transport = RecordingTransport()
    bot.app.transports["telegram"] = transport
    await bot.app.handle(telegram("/community 阳光社区"))
    assert "GRIDBOT_ADMINS" in transport.sent[-1][1]


async def test_reply_accepted_while_transport_was_down_is_sent_after_restart(bot):
    await bot.app.handle(telegram("/help", key="telegram:1"))  # no telegram transport running
    async with bot.app.db.transaction() as db:
        pending = await db.scalar(select(func.count()).select_from(models.OutboxMessage)
                                  .where(models.OutboxMessage.sent_at.is_(None)))
    assert pending == 1
    await bot.stop()
    transport = RecordingTransport()
    await bot.start()
    await bot.app.stop()
    from bot.app import App
    app = App(bot.config, clock=bot.app.clock)
    await app.start([transport])
    assert [chat for chat, _ in transport.sent] == ["-100"]
    await app.stop()


async def test_a_reply_costs_no_commit_of_its_own_and_is_never_sent_twice(bot, monkeypatch):
    # The "sent" mark of a reply rides on the next command's transaction (storage/db.py
    # `ride`). Waiting long for company here makes the count exact on a slow machine.
    monkeypatch.setattr("storage.db.RIDE_WAIT", 60)
    transport = RecordingTransport()
    bot.app.transports["telegram"] = transport
    commits: list[int] = []
    event.listen(bot.app.db.engine.sync_engine, "commit", lambda conn: commits.append(1))
    for n in range(1, 6):
        await bot.app.handle(telegram("/help", key=f"telegram:{n}"))
    assert len(transport.sent) == 5
    assert len(commits) == 5  # one per command, its predecessor's mark included

    # The last reply went out but is not marked yet: a retry must not send it again.
    bot.app.outbox._retry_needed = True
    await bot.app.outbox.retry()
    assert len(transport.sent) == 5

    clock = bot.app.clock
    await bot.app.stop()  # marks what went out before the database closes
    bot.app = None
    from bot.app import App
    again = App(bot.config, clock=clock)
    await again.start([transport])
    async with again.db.transaction() as db:
        unsent = await db.scalar(select(func.count()).select_from(models.OutboxMessage)
                                 .where(models.OutboxMessage.sent_at.is_(None)))
    await again.stop()
    assert unsent == 0 and len(transport.sent) == 5


async def test_undeliverable_direct_message_is_announced_in_the_group_without_content(community):
    transport = RecordingTransport()
    community.app.transports["telegram"] = transport

    @command("whisper", role=Role.RESIDENT)
    async def whisper(ctx) -> None:
        """Test only: a private message to the caller."""
        ctx.tell(ctx.person, "core/no_grid", origin=ctx.chat)

    try:
        await community.app.handle(telegram("/whisper", chat="-5"))
    finally:
        del REGISTRY.groups["whisper"]
    assert len(transport.sent) == 1
    chat, text = transport.sent[0]
    assert chat == "-5" and "@alice" in text and "/start" in text


async def test_a_refusal_after_writes_keeps_nothing_answers_once_and_spares_the_others(
    community,
):
    # A command that wrote, then said no naming a row it loaded: it runs without a savepoint
    # of its own, so it is rolled back whole and run again to be answered (bot/dispatch.py).
    transport = RecordingTransport()
    community.app.transports["telegram"] = transport
    runs: list[str] = []

    @command("scribble", role=Role.RESIDENT)
    async def scribble(ctx, word: Text) -> None:
        """Test only: writes, then refuses when told to."""
        runs.append(word)
        ctx.db.add(models.KeyValue(key=f"scribble:{word}", value="x"))
        await ctx.db.flush()
        if word == "no":
            grid = await ctx.db.scalar(select(models.Grid).where(models.Grid.code == "g2"))
            raise Reject("screening/household_elsewhere", household="3-1-101", grid=grid)
        ctx.reply("core/no_grid")

    try:
        # Side by side: the refusal shares its first transaction with the others.
        await asyncio.gather(*(
            community.app.handle(telegram(f"/scribble {word}", chat="-7", sender=str(n),
                                          key=f"telegram:scribble:{n}"))
            for n, word in enumerate(["a", "no", "b"])
        ))
        # Delivered again (as Telegram may): handled already, not answered twice.
        await community.app.handle(telegram("/scribble no", chat="-7", sender="1",
                                            key="telegram:scribble:1"))
    finally:
        del REGISTRY.groups["scribble"]
    async with community.app.db.transaction() as db:
        kept = set(await db.scalars(
            select(models.KeyValue.key).where(models.KeyValue.key.like("scribble:%"))))
    assert kept == {"scribble:a", "scribble:b"}
    refusals = [text for _, text in transport.sent if "属于网格" in text]
    assert refusals == ["住户 3-1-101 属于网格 g2「二网格」，请在该网格的群里登记。"]
    assert len(transport.sent) == 3
    assert runs.count("no") == 2  # once to run, once to answer


async def test_unexpected_error_is_logged_answered_once_and_the_bot_goes_on(bot, caplog):
    @command("explode", role=Role.RESIDENT)
    async def explode(ctx) -> None:
        """Test only: fails."""
        raise RuntimeError("boom")

    try:
        out = await bot.say("/explode")
    finally:
        del REGISTRY.groups["explode"]
    assert "出了问题" in out.text("hq")
    assert "boom" in caplog.text and "/explode" in caplog.text
    out = await bot.say("/help")
    assert out.chats() == ["hq"]


async def test_a_second_instance_takes_over_pending_replies_only_when_the_lease_runs_out(bot):
    from bot.app import App

    await bot.app.handle(telegram("/help", key="telegram:9"))  # queued by instance A, unsent
    other = App(bot.config, clock=bot.app.clock, instance_id="instance-b")
    transport = RecordingTransport()
    await other.start([transport])
    await other.scheduler.advance_to(bot.app.clock.now() + timedelta(seconds=90))
    assert transport.sent == []  # A's lease (2 min) still holds
    await other.scheduler.advance_to(bot.app.clock.now() + timedelta(minutes=2))
    assert [chat for chat, _ in transport.sent] == ["-100"]
    await other.scheduler.advance_to(bot.app.clock.now() + timedelta(minutes=5))
    assert len(transport.sent) == 1
    await other.stop()


async def test_only_the_instance_holding_the_lease_runs_jobs_and_another_takes_over(bot):
    from bot.app import JOBS_LEASE, App

    other = App(bot.config, clock=bot.app.clock, instance_id="instance-b")
    await other.start([])
    runs: list[str] = []

    async def job(jc) -> None:
        runs.append(jc.app.instance_id)

    await bot.app.run_job(job)
    await other.run_job(job)
    await bot.app.run_job(job)
    assert runs == [bot.app.instance_id, bot.app.instance_id]
    bot.app.clock.advance(JOBS_LEASE + timedelta(seconds=1))  # the first instance went quiet
    await other.run_job(job)
    await bot.app.run_job(job)
    assert runs[2:] == ["instance-b"]
    await other.stop()

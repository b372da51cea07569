"""The outbox: each chat's replies in the order they were created (also across a restart),
and replies that wait for a spent rate budget merged into one message without losing what
each answers or its buttons."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from bot.app import App
from bot.transports.base import (
    BaseTransport,
    Budget,
    Capabilities,
    Incoming,
    Outgoing,
    RateLimited,
    Sent,
)
from storage import models


@dataclass
class Recording(BaseTransport):
    """A network transport stand-in: records sends; optionally handles a message the moment
    it starts (as Telegram's polling does), and draws on a rate budget."""

    name: str = "telegram"
    capabilities: Capabilities = field(default_factory=lambda: Capabilities(buttons=True))
    on_start: list[Incoming] = field(default_factory=list)
    shared_budget: Budget | None = None
    limited: int = 0  # sends refused as rate limited, like Matrix's M_LIMIT_EXCEEDED
    sent: list[tuple[str, Outgoing]] = field(default_factory=list)

    async def start(self, app) -> None:
        for message in self.on_start:
            await app.handle(message, wait_for_delivery=False)

    async def stop(self) -> None:
        pass

    def budget(self, chat: str) -> Budget | None:
        return self.shared_budget

    async def send(self, chat: str, message: Outgoing) -> Sent:
        if self.limited and self.sent:
            self.limited -= 1
            raise RateLimited(0.05)
        self.sent.append((chat, message))
        return Sent(chat=chat, message_ids=[str(len(self.sent))])

    async def send_direct(self, user, dm_chat, message: Outgoing) -> Sent:
        return await self.send(f"dm:{user}", message)


def telegram(text: str, key: str, chat: str = "-100") -> Incoming:
    return Incoming(transport="telegram", chat=chat, sender="42", text=text,
                    sender_username="alice", sender_name="Alice", dedupe_key=key)


async def test_replies_pending_from_before_a_restart_go_out_before_new_ones(bot):
    # Accepted while Telegram was down: its reply waits in the outbox.
    await bot.app.handle(telegram("/start", key="telegram:1"))
    await bot.app.handle(telegram("/help", key="telegram:2", chat="-200"))
    clock = bot.app.clock
    await bot.stop()
    # At the next start, a new command arrives the moment the transport starts receiving.
    transport = Recording(on_start=[telegram("/help", key="telegram:3")])
    app = App(bot.config, clock=clock)
    await app.start([transport])
    await app.outbox.idle()
    await app.stop()
    in_chat = [message.text for chat, message in transport.sent if chat == "-100"]
    assert len(in_chat) == 2
    assert in_chat[0].startswith("你好！我是 gridbot")  # /start: the older reply first
    assert "/start" in in_chat[1] and not in_chat[1].startswith("你好")  # then /help
    assert [chat for chat, _ in transport.sent].count("-200") == 1


async def queue_rows(app: App, rows: list[dict]) -> None:
    async with app.db.transaction() as db:
        community = await db.scalar(select(models.Community.id))
        db.add_all(
            models.OutboxMessage(transport="telegram", created_at=app.clock.now(),
                                 community_id=community, **fields)
            for fields in rows
        )


def errand_post(n: int, chat: str = "-100") -> dict:
    return dict(
        chat=chat, text=f"新代办 E{n}：帮忙买菜", ref=f"E{n}", answers=f"@wang /errand{n}",
        buttons=[{"label": "认领", "command": f"/claim E{n}", "emoji": "✋"}],
    )


async def test_replies_waiting_for_a_spent_budget_go_out_merged_in_order_with_their_buttons(
    community,
):
    bot = community
    transport = Recording(shared_budget=Budget(2, 5.0))  # 2 at once, then one per 0.2 s
    bot.app.transports["telegram"] = transport
    await queue_rows(bot.app, [errand_post(n) for n in range(1, 8)]
                     + [dict(chat="-100", text="第一条公告", pin=True), errand_post(8)])
    await bot.app.outbox.deliver()

    messages = [message for _, message in transport.sent]
    # Two alone while the budget lasted; then what waited, merged as far as it may: the pinned
    # announcement stands alone, and the order of the chat is kept.
    assert [m.text.count("新代办") for m in messages] == [1, 1, 5, 0, 1]
    first, second, merged, pinned, last = messages
    assert first.text == "新代办 E1：帮忙买菜" and first.buttons[0]["label"] == "认领"
    assert merged.text.split("\n\n") == [
        f"↩ @wang /errand{n}\n新代办 E{n}：帮忙买菜" for n in range(3, 8)
    ]
    # One button per item, each naming its item and running its own command.
    assert [(b["label"], b["command"]) for b in merged.buttons] == [
        (f"认领 E{n}", f"/claim E{n}") for n in range(3, 8)
    ]
    assert merged.reply_to is None
    assert pinned.pin and pinned.text == "第一条公告"
    async with bot.app.db.transaction() as db:
        unsent = await db.scalar(select(models.OutboxMessage).where(
            models.OutboxMessage.sent_at.is_(None)))
        posted = (await db.scalars(select(models.PostedMessage))).all()
    assert unsent is None
    merged_posted = [p for p in posted if p.message == "3"]
    assert len(merged_posted) == 1 and len(merged_posted[0].buttons) == 5


async def test_without_buttons_a_merged_message_lists_the_commands(bot):
    # Matrix: buttons are reactions, which could not tell merged items apart.
    transport = Recording(capabilities=Capabilities(reactions=True, max_length=200),
                          shared_budget=Budget(1, 5.0))
    bot.app.transports["telegram"] = transport
    await queue_rows(bot.app, [errand_post(n) for n in range(1, 9)])
    await bot.app.outbox.deliver()

    messages = [message for _, message in transport.sent]
    assert messages[0].buttons and "/claim" not in messages[0].text  # alone: reactions
    merged = messages[1:]
    assert all(not m.buttons and len(m.text) <= 200 for m in merged)  # never past the limit
    assert len(merged) >= 2
    items = [item for m in merged for item in m.text.split("\n\n")]
    assert items == [
        f"↩ @wang /errand{n}\n新代办 E{n}：帮忙买菜\n[认领: /claim E{n}]" for n in range(2, 9)
    ]


async def test_when_the_server_says_rate_limited_what_waits_goes_out_merged(bot):
    # Matrix: no budget of its own; the homeserver's M_LIMIT_EXCEEDED (rc_message) says when.
    transport = Recording(capabilities=Capabilities(reactions=True), limited=2)
    bot.app.transports["telegram"] = transport
    await queue_rows(bot.app, [errand_post(n) for n in range(1, 7)])
    await bot.app.outbox.deliver()

    messages = [message for _, message in transport.sent]
    assert len(messages) == 2  # the first; then, after the wait, the other five in one
    assert messages[0].text == "新代办 E1：帮忙买菜" and messages[0].buttons
    assert [item.split("\n")[1] for item in messages[1].text.split("\n\n")] == [
        f"新代办 E{n}：帮忙买菜" for n in range(2, 7)
    ]
    assert "[认领: /claim E6]" in messages[1].text and not messages[1].buttons


async def test_a_budget_holds_in_every_rolling_window():
    now = [0.0]
    budget = Budget(10, 10 / 60, clock=lambda: now[0])
    sends: list[float] = []
    for _ in range(200):
        delay = budget.delay(1)
        now[0] += delay
        budget.spend(1)
        sends.append(now[0])
        now[0] += 0.01
    most = max(sum(1 for t in sends if start <= t < start + 60) for start in sends)
    assert most <= 20
    assert sends[9] < 1 and sends[10] > 5  # ten at once, then one every 6 s

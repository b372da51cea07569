"""The Telegram transport against a local Bot API server (tests/servers/botapi.py) over HTTP,
so python-telegram-bot's real client, polling loop and rate limiter run as in production.

Waiting: with polling, an update is confirmed to the server (`pending_updates() == 0`) only
after the bot has handled it and sent its replies, so `handled()` is the moment to look.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from bot.app import App
from bot.clock import Clock
from bot.config import Config
from bot.transports import telegram
from bot.transports.telegram import TelegramTransport, webhook_secret
from storage import models
from tests.servers.botapi import FakeBotAPI, SentMessage, botapi

__all__ = ["botapi"]  # the fixture, used by name

ADMIN, LEAD, WANG, LI = 7001, 7002, 7003, 7004
HQ, G1, G2 = -1001000000001, -1001000000002, -1001000000003
BOT = "gridbot_test_bot"


def populate(api: FakeBotAPI) -> None:
    """The people and the three group chats, the bot a member of each."""
    api.add_user(ADMIN, "Admin", "the_admin")
    api.add_user(LEAD, "Zhang", "Lead_Zhang")
    api.add_user(WANG, "Wang", "wang_w")
    api.add_user(LI, "Li")  # no username
    api.add_group(HQ, "阳光社区指挥部")
    api.add_group(G1, "一网格")
    api.add_group(G2, "二网格")


def config_for(api: FakeBotAPI, data_dir: Path, **settings: object) -> Config:
    return Config(
        data_dir=data_dir, telegram_token=api.token, telegram_api_url=api.root_url,
        admins=(str(ADMIN),), **settings,
    )


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[App]:
    """The bot with the Telegram transport, in this test's event loop."""
    app = App(config, clock=Clock())
    await app.start([TelegramTransport(config)])
    RUNNING.append(app)
    try:
        yield app
    finally:
        RUNNING.remove(app)
        await app.stop()


RUNNING: list[App] = []  # the apps of `running`, whose replies `handled` waits for


async def handled(api: FakeBotAPI, timeout: float = 10) -> None:  # noqa: ASYNC109
    """Every update confirmed, and the replies it caused sent (they go out in the background,
    so that one group's rate limit does not hold up the others)."""
    await api.wait_until(lambda: api.pending_updates() == 0, timeout, "every update handled")
    for app in RUNNING:
        await app.outbox.idle()


async def say(
    api: FakeBotAPI, user: int, chat: int, text: str, reply_to: int | None = None
) -> list[SentMessage]:
    """`user` writes `text` in `chat`; returns what the bot sent in answer (any chat)."""
    before = len(api.sent())
    assert api.user_says(user, chat, text, reply_to) is not None, f"the bot cannot see {text!r}"
    await handled(api)
    return api.sent()[before:]


def texts(sent: list[SentMessage], chat: int | None = None) -> list[str]:
    return [m["text"] or "" for m in sent if chat is None or m["chat_id"] == chat]


async def setup_grids(api: FakeBotAPI) -> None:
    """Community 阳光社区 (HQ), grids g1 and g2 linked to their chats, Wang a member of g1."""
    await say(api, ADMIN, HQ, "/community 阳光社区")
    await say(api, ADMIN, HQ, "/grid add g1 一网格")
    await say(api, ADMIN, HQ, "/grid add g2 二网格")
    await say(api, ADMIN, G1, "/grid link g1")
    await say(api, ADMIN, G2, "/grid link g2")
    await say(api, WANG, G1, "/join worker")


async def test_a_grid_session_end_to_end(tmp_path: Path) -> None:
    # Privacy mode off, as the README asks: the Chinese aliases are plain text to Telegram.
    async with FakeBotAPI(privacy_mode=False) as api:
        populate(api)
        async with running(config_for(api, tmp_path)) as app:
            assert app.bot_usernames == {BOT}
            [created] = await say(api, ADMIN, HQ, "/community 阳光社区")
            assert created["chat_id"] == HQ and "已创建社区「阳光社区」" in created["text"]
            assert texts(await say(api, ADMIN, HQ, "/grid add g1 一网格")) == [
                "已创建网格 g1「一网格」。请在该网格的群里发送 /grid link g1。"
            ]
            await say(api, ADMIN, HQ, "/grid add g2 二网格")
            [linked] = await say(api, ADMIN, G1, f"/grid@{BOT} link g1")
            assert linked["chat_id"] == G1 and "网格 g1「一网格」" in linked["text"]
            [added] = await say(api, ADMIN, G1, "/household add 3 units=2 floors=6 rooms=2")
            assert "新增 24 户" in added["text"]

            # A role given to @Lead_Zhang before Zhang ever spoke applies when Zhang does.
            [role] = await say(api, ADMIN, G1, "/role @Lead_Zhang leader")
            assert "@lead_zhang" in role["text"]
            [joined] = await say(api, LEAD, G1, "/join cadre")
            assert "欢迎 @lead_zhang 加入网格 g1" in joined["text"]
            [more] = await say(api, LEAD, G1, "/household add 3-3-101")
            assert "新增 1 户" in more["text"]

            # Chinese alias and a full-width slash, as plain text messages in the group.
            [wang] = await say(api, WANG, G1, "/报到 worker")
            assert "欢迎 @wang_w 加入网格 g1" in wang["text"]
            [li] = await say(api, LI, G1, "／join")
            assert "欢迎 Li 加入网格 g1" in li["text"]

            # A CSV register sent as a document with the command as its caption.
            await say(api, ADMIN, G2, "/grid link g2")
            before = len(api.sent())
            api.user_sends_document(
                ADMIN, G2, "register.csv", "户号\n3-4-101\n3-4-102\n不是户号\n".encode(),
                caption="/household import",
            )
            await handled(api)
            [imported] = api.sent()[before:]
            assert imported["chat_id"] == G2
            assert "新增 2 户" in imported["text"] and "第 4 行" in imported["text"]
            # Or as a reply to a document sent before.
            api.user_sends_document(ADMIN, G2, "more.csv", b"household\n3-4-201\n")
            document_id = imported["message_id"] + 1  # message ids count up in each chat
            [more] = await say(api, ADMIN, G2, "/household import", reply_to=document_id)
            assert "新增 1 户（3-4-201）" in more["text"]

            [listing] = await say(api, WANG, G1, "/grid list")
            assert listing["chat_id"] == G1
            assert "g1 一网格：住户 25，成员 3" in listing["text"]
            assert "g2 二网格：住户 3，成员 0" in listing["text"]

            async with app.db.transaction() as db:
                people = (await db.scalars(select(models.Person))).all()
            assert {(p.external_id, p.username, p.display_name) for p in people} == {
                (str(ADMIN), "the_admin", "Admin"),
                (str(LEAD), "lead_zhang", "Zhang"),
                (str(WANG), "wang_w", "Wang"),
                (str(LI), None, "Li"),
            }


async def test_an_errand_claimed_by_button_and_a_direct_message_before_and_after_start(
    botapi: FakeBotAPI, tmp_path: Path
) -> None:
    populate(botapi)
    async with running(config_for(botapi, tmp_path)) as app:
        await setup_grids(botapi)
        [posted] = await say(botapi, LI, G1, "/errand 帮忙买药")
        assert posted["text"].startswith("新代办 E1：帮忙买药")
        assert posted["reply_markup"] == {
            "inline_keyboard": [[{"text": "✋ 认领", "callback_data": "/claim E1"}]]
        }

        # The press runs `/claim E1` as the presser: Li is no member, so is refused.
        botapi.user_presses(LI, posted, "/claim E1")
        await handled(botapi)
        [refused] = botapi.sent()[-1:]
        assert refused["chat_id"] == G1 and "需要先报到成为网格员" in refused["text"]

        before = len(botapi.sent())
        botapi.user_presses(WANG, posted, "/claim E1")
        await handled(botapi)
        claimed, notice = botapi.sent()[before:]
        assert claimed["chat_id"] == G1 and "@wang_w 认领了 E1" in claimed["text"]
        # Li, who posted it, is told in private, but never started the bot: 403 → the group
        # is told so, without the message's content.
        assert notice["chat_id"] == G1
        assert notice["text"].startswith("Li：我无法私信你") and "帮忙买药" not in notice["text"]
        to_li = [c.status for c in botapi.calls("sendMessage") if c.params["chat_id"] == str(LI)]
        assert to_li == [403]
        assert len(botapi.answered_callbacks) == 2  # each press answered once

        # A second claimer gets a clear "taken".
        botapi.user_presses(ADMIN, posted, "/claim E1")
        await handled(botapi)
        assert "E1 已由 @wang_w 认领" in botapi.sent()[-1]["text"]

        # Once Li has started the bot, the next direct message reaches Li.
        await say(botapi, LI, LI, "/start")
        sent = await say(botapi, WANG, G1, "/done E1")
        # (Different chats are delivered side by side, so only each chat's order is fixed.)
        assert sorted((m["chat_id"], m["text"]) for m in sent) == sorted([
            (G1, "✅ E1 已完成，谢谢 @wang_w！"),
            (LI, "你发布的代办 E1「帮忙买药」已由 @wang_w 完成。"),
        ])
        async with app.db.transaction() as db:
            errand = await db.scalar(select(models.Errand))
            failed = await db.scalar(select(models.OutboxMessage).where(
                models.OutboxMessage.error.is_not(None)))
        assert errand.state == "done"
        assert "bot can't initiate conversation" in failed.error


async def test_addressed_commands_aliases_and_other_bots(tmp_path: Path) -> None:
    async with FakeBotAPI(privacy_mode=False) as api:  # the bot sees every group message
        populate(api)
        async with running(config_for(api, tmp_path)):
            [mine] = await say(api, WANG, G1, "/help@GridBot_Test_Bot")
            assert mine["chat_id"] == G1 and "/start" in mine["text"]
            # In a group the answer is a reply to the command it answers.
            command_id = json.loads(api.calls("sendMessage")[-1].params["reply_parameters"])
            assert command_id["message_id"] > 0
            assert await say(api, WANG, G1, "/help@otherbot") == []
            assert await say(api, WANG, G1, "just chatting, not a command") == []
            [alias] = await say(api, WANG, G1, "/帮助")
            assert alias["text"] == mine["text"]
            [unknown] = await say(api, WANG, G1, "/nosuchthing")
            assert unknown["text"].startswith("没有 /nosuchthing 这个命令")


async def test_command_menus_per_scope(botapi: FakeBotAPI, tmp_path: Path) -> None:
    def menu(scope: dict[str, object]) -> dict[str, str]:
        return {c["command"]: c["description"] for c in botapi.commands(scope)}

    async with running(config_for(botapi, tmp_path)):
        groups = menu({"type": "all_group_chats"})
        private = menu({"type": "all_private_chats"})
        admin = menu({"type": "chat", "chat_id": ADMIN})
    assert botapi.commands() == []  # the default scope is left alone
    assert groups["join"] == "向本网格报到，登记类别、党员身份和工作单位"
    # The menus are the access rule's dry run for a member (bot/access.py): in a group,
    # what a member may use in a grid chat; in a private chat, what works there.
    assert groups["grid"] == "list: 各网格的住户、成员和排查覆盖率"
    assert "household" not in groups and "household" not in private  # leaders only
    assert "screen" in groups and "screen" not in private  # grid chats only
    assert "watch" in private  # works in a direct chat
    # /community is for the bot's admins: only in their own private chat's menu.
    assert "community" not in groups and "community" not in private
    assert admin["community"] == "创建社区；本群成为指挥部群，你成为社区书记"
    assert set(private) < set(admin)
    assert list(groups) == sorted(groups)


async def test_text_comes_back_exactly_as_typed(botapi: FakeBotAPI, tmp_path: Path) -> None:
    populate(botapi)
    async with running(config_for(botapi, tmp_path)):
        await setup_grids(botapi)
        typed = "<b>Tom & Jerry</b> &amp; 5 < 6"
        [posted] = await say(botapi, LI, G1, f"/errand {typed}")
    assert posted["parse_mode"] is None
    assert posted["message"]["text"].startswith(f"新代办 E1：{typed}\n")
    assert posted["message"].get("entities", []) == []  # no bold: the tags are just text


async def test_long_messages_files_pins_and_replies(botapi: FakeBotAPI, tmp_path: Path) -> None:
    populate(botapi)
    async with running(config_for(botapi, tmp_path)) as app:
        await setup_grids(botapi)
        [linked, *_] = botapi.sent(G1)
        blocks = [f"第{n}节\n" + "网格员巡查记录。" * 450 for n in range(1, 4)]  # 3,604 chars each
        too_long = "/claim " + "E1" * 30  # 67 bytes: more than a button can carry
        async with app.db.transaction() as db:
            community = await db.scalar(select(models.Community))
            queued = [
                dict(text="\n\n".join(blocks), pin=True,
                     buttons=[{"label": "列表", "command": "/errands", "emoji": "📋"}]),
                dict(text="E1 导出", file_name="errands.csv", file_data=b"id,text\nE1,buy\n"),
                dict(text="E2", buttons=[{"label": "认领", "command": too_long}]),
                dict(text="回复", reply_to=str(linked["message_id"])),
            ]
            db.add_all(
                models.OutboxMessage(
                    transport="telegram", chat=str(G1), community_id=community.id,
                    created_at=community.created_at, **fields,
                )
                for fields in queued
            )
        before = len(botapi.sent())
        await app.outbox.deliver()
        first, second, third, file, hint, reply = botapi.sent()[before:]
        async with app.db.transaction() as db:
            posted = (await db.scalars(select(models.PostedMessage.message))).all()
    # In order, at section boundaries; the buttons ride on the last part; the first is pinned.
    assert [first["text"], second["text"], third["text"]] == blocks
    assert first["reply_markup"] is None and second["reply_markup"] is None
    assert third["reply_markup"] == {
        "inline_keyboard": [[{"text": "📋 列表", "callback_data": "/errands"}]]
    }
    assert botapi.pinned(G1) == first["message_id"]
    assert sorted(posted) == sorted(str(m["message_id"]) for m in (first, second, third, hint))
    assert (file["document_name"], file["document_bytes"], file["caption"]) == (
        "errands.csv", b"id,text\nE1,buy\n", "E1 导出"
    )
    assert hint["text"] == f"E2\n[认领: {too_long}]" and hint["reply_markup"] is None
    assert reply["message"]["reply_to_message"]["message_id"] == linked["message_id"]


async def test_flood_control_and_server_errors_are_survived(
    botapi: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telegram, "FIRST_BACKOFF", 0.05)
    populate(botapi)

    def statuses() -> list[int]:
        return [c.status for c in botapi.calls("sendMessage")]

    async with running(config_for(botapi, tmp_path)) as app:
        [hello] = await say(botapi, WANG, WANG, "/start")

        botapi.fail_next("sendMessage", status=429, retry_after=1)
        assert texts(await say(botapi, WANG, WANG, "/start")) == [hello["text"]]
        assert statuses()[-2:] == [429, 200]  # PTB's rate limiter waited and retried

        botapi.fail_next("sendMessage", status=502)
        assert texts(await say(botapi, WANG, WANG, "/start")) == [hello["text"]]
        assert statuses()[-2:] == [502, 200]  # retried here after a pause

        # A longer outage: the reply stays in the outbox and goes out on its next round.
        botapi.fail_next("sendMessage", n=telegram.ATTEMPTS, status=502)
        assert await say(botapi, WANG, WANG, "/start") == []
        assert statuses()[-telegram.ATTEMPTS :] == [502] * telegram.ATTEMPTS
        await app.outbox.deliver()
        assert texts(botapi.sent()[-1:]) == [hello["text"]]

        # A chat that does not exist is a permanent failure: no retries, no more rounds.
        async with app.db.transaction() as db:
            db.add(models.OutboxMessage(
                transport="telegram", chat="-1009999999999", text="hello?",
                created_at=app.clock.now(),
            ))
        calls = len(botapi.calls("sendMessage"))
        await app.outbox.deliver()
        await app.outbox.deliver()
        async with app.db.transaction() as db:
            lost = await db.scalar(select(models.OutboxMessage).where(
                models.OutboxMessage.chat == "-1009999999999"))
    assert statuses()[calls:] == [400]
    assert "chat not found" in lost.error.lower() and lost.sent_at is None
    assert len(botapi.sent(WANG)) == 4


async def test_a_message_written_while_telegram_is_unreachable_goes_out_when_it_is_back(
    botapi: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telegram, "FIRST_BACKOFF", 0.05)
    populate(botapi)
    async with running(config_for(botapi, tmp_path)) as app:
        await say(botapi, WANG, WANG, "/start")
        await botapi.stop()  # connections refused: the bot's HTTP client fails, retries, gives up
        async with app.db.transaction() as db:
            db.add(models.OutboxMessage(
                transport="telegram", chat=str(WANG), text="still there?",
                created_at=app.clock.now(),
            ))
        await app.outbox.deliver()
        async with app.db.transaction() as db:
            waiting = await db.scalar(select(models.OutboxMessage).where(
                models.OutboxMessage.text == "still there?"))
        assert waiting.sent_at is None and waiting.error is None  # kept for the next round
        await botapi.start()
        await app.outbox.deliver()
    assert texts(botapi.sent(WANG)[-1:]) == ["still there?"]
    assert texts(botapi.sent(WANG)).count("still there?") == 1


BURST = 30
REPO = Path(__file__).resolve().parents[2]


def handled_keys(data_dir: Path) -> int:
    """How many Telegram updates the bot has recorded as handled (read beside the bot)."""
    with sqlite3.connect(data_dir / "gridbot.db") as db:
        [(count,)] = db.execute(
            "SELECT count(*) FROM processed_messages WHERE key LIKE 'telegram:%'"
        ).fetchall()
    return count


@pytest.mark.slow  # starts `gridbot run` in a process of its own (~5 s of imports)
async def test_a_crash_mid_burst_loses_nothing_and_doubles_nothing(
    botapi: FakeBotAPI, tmp_path: Path
) -> None:
    populate(botapi)
    config = config_for(botapi, tmp_path)
    async with running(config):
        await say(botapi, ADMIN, HQ, "/community 阳光社区")
        await say(botapi, ADMIN, ADMIN, "/start")
    baseline = handled_keys(tmp_path)
    replies_before = len(botapi.sent(ADMIN))
    botapi.fail_next("sendMessage", n=100_000, status=502)
    for n in range(1, BURST + 1):
        botapi.user_says(ADMIN, ADMIN, f"/grid add g{n:02} 网格{n:02}")

    # `gridbot run` in its own process, killed with SIGKILL halfway through the burst.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
    env |= {
        "GRIDBOT_TELEGRAM_TOKEN": botapi.token, "GRIDBOT_TELEGRAM_API_URL": botapi.root_url,
        "GRIDBOT_DATA_DIR": str(tmp_path), "GRIDBOT_ADMINS": str(ADMIN),
    }
    with (tmp_path / "bot.log").open("wb") as log:
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", cwd=REPO, env=env, stdout=log, stderr=log,
        )
        try:
            # Kill it once half the burst is handled, mid-batch. No reply gets out before
            # (every send fails), so none can have gone out without being marked sent.
            async with asyncio.timeout(60):
                while handled_keys(tmp_path) - baseline < BURST // 2:  # noqa: ASYNC110 (another process)
                    await asyncio.sleep(0.005)
        finally:
            bot.send_signal(signal.SIGKILL)
            await bot.wait()
    handled_before_crash = handled_keys(tmp_path) - baseline
    unconfirmed_at_crash = botapi.pending_updates()
    botapi.clear_faults()

    async with running(config) as app:
        await handled(botapi, timeout=30)
        async with app.db.transaction() as db:
            grids = await db.scalar(select(func.count()).select_from(models.Grid))

    replies = texts(botapi.sent(ADMIN)[replies_before:])
    created = Counter(r.split()[1][:3] for r in replies if r.startswith("已创建网格"))
    assert created == {f"g{n:02}": 1 for n in range(1, BURST + 1)}
    assert len(replies) == BURST  # and nothing else, e.g. no "grid exists" for a repeat
    assert grids == BURST
    assert handled_keys(tmp_path) - baseline == BURST
    # Killed mid-batch: none of the batch was confirmed to Telegram, so all of it came
    # again, and the dispatcher skipped the part handled before the crash.
    assert BURST // 2 <= handled_before_crash < BURST
    assert unconfirmed_at_crash == BURST
    print(
        f"\ncrash after {handled_before_crash}/{BURST} handled; {unconfirmed_at_crash} "
        f"redelivered, {handled_before_crash} of them skipped as handled; "
        f"{len(replies)} replies, one per command"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_webhook_mode(botapi: FakeBotAPI, tmp_path: Path) -> None:
    pytest.importorskip("tornado", reason="webhook mode needs python-telegram-bot[webhooks]")
    botapi.add_user(WANG, "Wang", "wang_w", started=True)
    port = free_port()
    url = "https://gridbot.example/telegram/hook"
    config = config_for(
        botapi, tmp_path, telegram_webhook_url=url, telegram_webhook_listen=f"127.0.0.1:{port}"
    )
    update = {
        "update_id": 987654321,
        "message": {
            "message_id": 1, "date": int(time.time()), "text": "/start",
            "chat": {"id": WANG, "type": "private", "first_name": "Wang", "username": "wang_w"},
            "from": {"id": WANG, "is_bot": False, "first_name": "Wang", "username": "wang_w"},
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }
    secret = {"X-Telegram-Bot-Api-Secret-Token": webhook_secret(botapi.token)}
    async with (
        running(config) as app,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
    ):
        assert botapi.webhook_url == url
        [set_webhook] = botapi.calls("setWebhook")
        assert set_webhook.params["secret_token"] == secret["X-Telegram-Bot-Api-Secret-Token"]
        assert set_webhook.params["max_connections"] == "1"

        assert (await http.post("/telegram/hook", json=update)).status_code == 403  # no secret
        assert botapi.sent() == []
        # Telegram's call is answered once the update has been handled (its reply is stored
        # and goes out in the background).
        assert (await http.post("/telegram/hook", json=update, headers=secret)).status_code == 200
        async with app.db.transaction() as db:
            assert await db.get(models.ProcessedMessage, "telegram:987654321") is not None
        await app.outbox.idle()
        [answer] = botapi.sent(WANG)
        assert answer["text"].startswith("你好！我是 gridbot")
        # Telegram calls again when it got no answer: the update is not handled twice.
        assert (await http.post("/telegram/hook", json=update, headers=secret)).status_code == 200
    assert len(botapi.sent(WANG)) == 1
    assert botapi.calls("getUpdates") == []


async def test_private_details_typed_in_a_group_are_removed_where_the_bot_may(
    botapi: FakeBotAPI, tmp_path: Path
) -> None:
    """A key person's name typed in a grid chat: stored, answered without it, and the
    person's message deleted when the bot is a group admin; where it is not, the person is
    asked by direct message (once a day) to use a direct chat."""
    populate(botapi)
    async with running(config_for(botapi, tmp_path)):
        await setup_grids(botapi)
        await say(botapi, ADMIN, G1, "/household add 3-1-101")
        await say(botapi, WANG, WANG, "/start")  # a private chat with the bot
        sent = await say(botapi, WANG, G1, "/watch add 3-1-101 张三丰 close-contact")
        assert botapi.deleted == []
        [reply] = [m for m in sent if m["chat_id"] == G1]
        assert "K1" in reply["text"] and "张三丰" not in reply["text"]
        [hint] = [m for m in sent if m["chat_id"] == WANG]
        assert "私聊" in hint["text"] and "张三丰" not in hint["text"]

        botapi.grant_delete(G1)
        bot_messages = {m["message_id"] for m in botapi.sent() if m["chat_id"] == G1}
        await say(botapi, WANG, G1, "/checkin K1 38.6 咳嗽")
        [(chat, removed)] = botapi.deleted
        assert chat == G1 and removed not in bot_messages  # wang's message, not a reply
        group = [m for m in botapi.sent() if m["chat_id"] == G1]
        assert all(
            "38.6" not in (m["text"] or "") and "咳嗽" not in (m["text"] or "") for m in group
        )


async def test_a_batch_is_handled_chats_side_by_side_each_in_order_sharing_commits(
    botapi: FakeBotAPI, tmp_path: Path
) -> None:
    populate(botapi)
    config = config_for(botapi, tmp_path)
    async with running(config):
        await setup_grids(botapi)
    # Posted while the bot is down: they come as one getUpdates batch.
    per_chat = 12
    for n in range(1, per_chat + 1):
        botapi.user_says(WANG, G1, f"/errand 一网格第{n}件")
        botapi.user_says(ADMIN, G2, f"/errand 二网格第{n}件")
    commands_per_commit: list[int] = []
    in_transaction: Counter[int] = Counter()

    def statement(conn, cursor, sql: str, *args: object) -> None:
        if sql.startswith("INSERT INTO processed_messages"):
            in_transaction[id(conn)] += 1

    def committed(conn) -> None:
        if in_transaction[id(conn)]:
            commands_per_commit.append(in_transaction.pop(id(conn)))

    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Engine, "commit", committed)
    try:
        async with running(config):
            await handled(botapi, timeout=30)
    finally:
        event.remove(Engine, "before_cursor_execute", statement)
        event.remove(Engine, "commit", committed)

    for chat, name in ((G1, "一网格"), (G2, "二网格")):
        posted = re.findall(rf"新代办 E(\d+)：{name}第(\d+)件", "\n".join(texts(botapi.sent(chat))))
        # Every command answered once, in the order it was typed in its chat, and handled
        # in that order (the numbers were handed out as they were handled).
        assert [int(n) for _, n in posted] == list(range(1, per_chat + 1))
        numbers = [int(e) for e, _ in posted]
        assert numbers == sorted(numbers)
    assert sum(commands_per_commit) == 2 * per_chat
    # Commands of the two chats arrived together and shared commits.
    assert max(commands_per_commit) > 1 and len(commands_per_commit) < 2 * per_chat
    print(f"\n{2 * per_chat} commands in {len(commands_per_commit)} commits: "
          f"{commands_per_commit}")

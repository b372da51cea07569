"""gridbot on a real Synapse, with real nio users in real rooms."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
import pytest_asyncio
from nio import AsyncClient
from sqlalchemy import func, select

from storage import models
from tests.integration.matrix_helpers import BOT_PASSWORD, Bot, Member, eventually, room_with_bot
from tests.servers.synapse import Synapse, fail_fast_client_config

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture
async def people(synapse: Synapse, tmp_path):
    """An admin (in GRIDBOT_ADMINS) and two residents, alice and bob. Their clients encrypt
    like Element's: the rooms here are plain, the direct rooms the bot opens are encrypted."""
    admin, alice, bob = [await Member.register(synapse, name, store=tmp_path / "people")
                         for name in ("admin", "alice", "bob")]
    yield admin, alice, bob
    for member in (admin, alice, bob):
        await member.close()


@pytest_asyncio.fixture
async def bot(synapse: Synapse, tmp_path, people):
    admin = people[0]
    gridbot = Bot(synapse, tmp_path, admins=(admin.user_id,))
    await gridbot.start()
    yield gridbot
    await gridbot.stop()


async def test_grid_session_end_to_end(bot, people):
    admin, alice, bob = people
    hq = await room_with_bot(admin, bot, "HQ")
    created = await admin.ask(hq, bot.user_id, "/community 阳光社区")
    assert "已创建社区「阳光社区」" in created[0]
    added = await admin.ask(hq, bot.user_id, "/grid add g1 一网格")
    assert "已创建网格 g1「一网格」" in added[0]

    g1 = await room_with_bot(admin, bot, "G1", alice, bob)
    linked = await admin.ask(g1, bot.user_id, "/grid link g1")
    assert "网格 g1「一网格」" in linked[0]
    households = await admin.ask(g1, bot.user_id, "/household add 3-1-101 3-1-102 3-1-201")
    assert "新增 3 户" in households[0]
    assert f"欢迎 @{alice.localpart}" in (await alice.ask(g1, bot.user_id, "/join"))[0]
    assert "社区工作者" in (await bob.ask(g1, bot.user_id, "/join worker"))[0]

    listing = (await admin.ask(hq, bot.user_id, "/grid list"))[0]
    assert "g1 一网格：住户 3，成员 2" in listing

    # Every answer is an m.notice with an HTML body beside the plain one.
    notice = admin.messages(hq, bot.user_id, "m.notice")[-1]
    assert notice["body"] == listing
    assert notice["format"] == "org.matrix.custom.html"
    assert notice["formatted_body"] == listing.replace("\n", "<br>")
    assert not admin.messages(hq, bot.user_id, "m.text")
    first = admin.messages(hq, bot.user_id, "m.notice")[0]
    assert "/grid add <代码> <名称>" in first["body"]
    assert "/grid add &lt;代码&gt; &lt;名称&gt;" in first["formatted_body"]


async def _community(admin: Member, bot: Bot) -> str:
    """An HQ room with the community 阳光社区 in it."""
    hq = await room_with_bot(admin, bot, "HQ")
    await admin.ask(hq, bot.user_id, "/community 阳光社区")
    return hq


async def test_restart_while_users_keep_sending_handles_every_command_once(
    bot, people, caplog
):
    admin = people[0]
    hq = await _community(admin, bot)
    before = len(admin.notices(hq, bot.user_id))
    codes = [f"r{n}" for n in range(1, 41)]

    # The bot is stopped while the commands keep coming: 10 arrive as it stops, 25 (more than
    # a sync's timeline holds) after it is gone.
    for code in codes[:5]:
        await admin.say(hq, f"/grid add {code} 网格{code}")
    await eventually(lambda: len(admin.notices(hq, bot.user_id)) >= before + 3, "the first answers")
    device = bot.transport.client.device_id
    stopping = asyncio.create_task(bot.stop())
    for code in codes[5:15]:
        await admin.say(hq, f"/grid add {code} 网格{code}")
    await stopping
    for code in codes[15:]:
        await admin.say(hq, f"/grid add {code} 网格{code}")

    caplog.set_level(logging.INFO, logger="bot.transports.matrix")
    await bot.start()  # a new App on the same database
    assert bot.transport.client.device_id == device  # the session was kept, not logged in anew
    await eventually(
        lambda: len(admin.notices(hq, bot.user_id)) >= before + len(codes), "every answer"
    )
    # The bot handles a room's events in order: once this is answered, nothing else is due.
    await admin.ask(hq, bot.user_id, "/grid list")
    answers = admin.notices(hq, bot.user_id)[before:-1]
    assert sorted(answers) == sorted(
        f"已创建网格 {c}「网格{c}」。请在该网格的群里发送 /grid link {c}。" for c in codes
    )
    async with bot.app.db.transaction() as db:
        assert await db.scalar(select(func.count()).select_from(models.Grid)) == len(codes)
    # They came back as a limited timeline, and the gap before it was fetched.
    assert re.search(r"back-filled [1-9]\d* events", caplog.text)


async def test_rate_limited_homeserver_loses_nothing(synapse_factory, tmp_path, caplog):
    server = synapse_factory(rc_message=(0.5, 3))
    admin, alice, bob = [await Member.register(server, name) for name in ("admin", "alice", "bob")]
    bot = Bot(server, tmp_path, admins=(admin.user_id,))
    await bot.start()
    caplog.set_level(logging.INFO, logger="bot.transports.matrix")
    try:
        hq = await room_with_bot(admin, bot, "HQ", alice, bob)
        await admin.ask(hq, bot.user_id, "/community 阳光社区")
        before = len(admin.notices(hq, bot.user_id))
        # Three people at the homeserver's pace each: the bot must answer three times as fast.
        codes = [f"q{n}" for n in range(1, 7)]

        async def admin_adds():
            for code in codes:
                await admin.say(hq, f"/grid add {code} 网格{code}")

        async def asks_help(member):
            for _ in range(6):
                await member.say(hq, "/help")

        await asyncio.gather(admin_adds(), asks_help(alice), asks_help(bob))
        await admin.say(hq, "/grid list")

        def answered() -> str:
            return "\n\n".join(admin.notices(hq, bot.user_id)[before:])

        # What waited for the limit went out merged: every command answered, in order.
        await eventually(lambda: "q6 网格q6：住户 0" in answered(), "every command answered")
        answers = answered()
        assert re.findall(r"已创建网格 (q\d)", answers) == codes
        assert answers.count("你在这里可以用的命令：") == 2 * 6
        assert answers.rstrip().endswith(admin.notices(hq, bot.user_id)[-1].rstrip())
        assert "q6 网格q6：住户 0" in admin.notices(hq, bot.user_id)[-1]
        assert len(admin.notices(hq, bot.user_id)[before:]) < 6 + 2 * 6 + 1
        assert "rate limited" in caplog.text  # the bot did hit the limit, and waited
    finally:
        await bot.stop()
        for member in (admin, alice, bob):
            await member.close()


async def test_homeserver_going_away_and_coming_back(synapse_factory, tmp_path, caplog):
    server = synapse_factory()
    admin = await Member.register(server, "admin")
    bot = Bot(server, tmp_path, admins=(admin.user_id,))
    await bot.start()
    try:
        hq = await _community(admin, bot)

        def answered(code):
            return any(f"已创建网格 {code}" in n for n in admin.notices(hq, bot.user_id))

        await admin.say(hq, "/grid add h0 零")  # answered before, during or after the outage
        await asyncio.to_thread(server.stop)
        await eventually(lambda: "matrix sync failed" in caplog.text, "the bot noticing")
        await asyncio.to_thread(server.start)

        await admin.say(hq, "/grid add h1 一")
        await eventually(lambda: answered("h1"), "h1's answer")
        await bot.app.outbox.deliver()  # what the outbox's retry job does every minute
        await eventually(lambda: answered("h0"), "h0's answer")
        listing = (await admin.ask(hq, bot.user_id, "/grid list"))[0]
        assert "h0 零" in listing and "h1 一" in listing
        assert not any("已存在" in n for n in admin.notices(hq, bot.user_id))
    finally:
        await bot.stop()
        await admin.close()


async def _person(bot: Bot, user_id: str) -> models.Person:
    async with bot.app.db.transaction() as db:
        return await db.scalar(select(models.Person).where(models.Person.external_id == user_id))


async def _queue(bot: Bot, **fields) -> None:
    """A message as a command or job would leave it in the outbox, then delivered."""
    async with bot.app.db.transaction() as db:
        community = await db.scalar(select(models.Community))
        db.add(models.OutboxMessage(
            transport="matrix", community_id=community.id if community else None,
            created_at=bot.app.clock.now(), **fields,
        ))
    await bot.app.outbox.deliver()


def _spy(bot: Bot) -> list:
    """Every Incoming the transport hands to the app."""
    seen = []
    handle = bot.app.handle

    async def spy(message, **options):
        seen.append(message)
        await handle(message, **options)

    bot.app.handle = spy
    return seen


async def test_direct_messages(bot, people):
    admin, alice, bob = people
    hq = await _community(admin, bot)
    await admin.ask(hq, bot.user_id, "/grid add g1 一网格")
    g1 = await room_with_bot(admin, bot, "G1", alice)
    await admin.ask(g1, bot.user_id, "/grid link g1")
    await alice.ask(g1, bot.user_id, "/join")
    seen = _spy(bot)

    # The bot opens a direct room for a message to alice, and uses it again after.
    person = await _person(bot, alice.user_id)
    await _queue(bot, person_id=person.id, text="体温 37.9 的详情只发给你")
    await eventually(lambda: len(alice.invites) == 2, "the bot's invite")
    [dm] = set(alice.invites) - {g1}
    assert alice.invites[dm].get("is_direct") is True
    await alice.join(dm)
    await eventually(
        lambda: alice.notices(dm, bot.user_id) == ["体温 37.9 的详情只发给你"], "the DM"
    )
    await _queue(bot, person_id=person.id, text="第二条私信")
    await eventually(lambda: len(alice.notices(dm, bot.user_id)) == 2, "the second DM")
    assert set(alice.invites) == {g1, dm}

    answer = (await alice.ask(dm, bot.user_id, "/me"))[0]
    assert "网格 g1「一网格」" in answer
    assert seen[-1].is_direct and seen[-1].chat == dm
    assert (await _person(bot, alice.user_id)).dm_chat == dm

    # A room bob opens as a direct chat is one; a room of two made as a group is not.
    bob_dm = await bob.create_room("", bot.user_id, is_direct=True)
    await eventually(lambda: bob.joined(bob_dm, bot.user_id), "the bot joining bob's DM")
    await bob.ask(bob_dm, bot.user_id, "/help")
    assert seen[-1].is_direct and seen[-1].sender == bob.user_id
    pair = await room_with_bot(bob, bot, "bob and the bot")
    await bob.ask(pair, bot.user_id, "/help")
    assert not seen[-1].is_direct

    # Once someone else is in it, a direct room is direct no more: the next DM gets a new one.
    await bob.call(bob.client.room_invite, bob_dm, alice.user_id)
    await eventually(lambda: bob_dm in alice.invites, "alice's invite")
    await alice.join(bob_dm)
    await bob.ask(bob_dm, bot.user_id, "/help")
    assert not seen[-1].is_direct
    async with bot.app.db.transaction() as db:
        chat = await db.scalar(select(models.Chat).where(models.Chat.external_id == bob_dm))
        assert not chat.is_direct  # so no private detail is shown there any more
    await _queue(bot, person_id=(await _person(bot, bob.user_id)).id, text="给 bob 的私信")
    await eventually(lambda: bob.invites, "a new direct room for bob")
    [fresh] = bob.invites
    await bob.join(fresh)
    await eventually(lambda: bob.notices(fresh, bot.user_id) == ["给 bob 的私信"], "bob's DM")
    assert "给 bob 的私信" not in bob.notices(bob_dm, bot.user_id)


async def test_direct_message_that_cannot_be_delivered_is_reported_in_the_group(bot, people):
    admin, alice, _ = people
    hq = await _community(admin, bot)
    await admin.ask(hq, bot.user_id, "/grid add g1 一网格")
    g1 = await room_with_bot(admin, bot, "G1", alice)
    await admin.ask(g1, bot.user_id, "/grid link g1")
    async with bot.app.db.transaction() as db:
        ghost = models.Person(
            transport="matrix", external_id="@nobody-here:localhost", username="nobody-here",
            created_at=bot.app.clock.now(),
        )
        db.add(ghost)
    await _queue(bot, person_id=ghost.id, text="体温 38.5", origin_chat=g1)
    await eventually(lambda: admin.notices(g1, bot.user_id)[-1:] == [
        "@nobody-here：我无法私信你。请接受我发给你的私聊邀请（或直接邀请我进入与你的私聊），"
        "之后提醒和详情会私信给你。"
    ], "the notice in the group")
    assert not any("38.5" in n for n in admin.notices(g1, bot.user_id))


async def test_tapping_a_reaction_runs_its_buttons_command(bot, people):
    admin = people[0]
    hq = await _community(admin, bot)
    seen = _spy(bot)
    await _queue(bot, chat=hq, text="点 ✋ 看网格",
                 buttons=[{"label": "网格", "command": "/grid list", "emoji": "✋"}])
    await eventually(lambda: "点 ✋ 看网格" in admin.notices(hq, bot.user_id), "the post")
    post = next(e for e in admin.events[hq] if e["content"].get("body") == "点 ✋ 看网格")
    reaction = {"rel_type": "m.annotation", "event_id": post["event_id"], "key": "✋"}
    await eventually(lambda: any(
        e["type"] == "m.reaction" and e["sender"] == bot.user_id
        and e["content"]["m.relates_to"] == reaction for e in admin.events[hq]
    ), "the bot's own ✋ on its post")

    before = len(admin.notices(hq, bot.user_id))
    await admin.react(hq, post["event_id"], "👍")  # no such button
    tap = await admin.react(hq, post["event_id"], "✋\ufe0f")  # as some clients send it
    await admin.say(hq, "/grid add g9 九")
    answers = await admin.notices_after(hq, bot.user_id, before, 2)
    assert len(answers) == 2  # the tap's answer and the command's: 👍 and the bot's ✋ ran nothing
    assert answers[0].startswith("「阳光社区」的网格")
    assert [m.dedupe_key for m in seen if m.text == "/grid list"] == [f"matrix:{tap}"]


async def test_files_for_a_command_and_files_from_the_bot(bot, people):
    admin = people[0]
    hq = await _community(admin, bot)
    await admin.ask(hq, bot.user_id, "/grid add g1 一网格")
    g1 = await room_with_bot(admin, bot, "G1")
    await admin.ask(g1, bot.user_id, "/grid link g1")

    # The command as the file's caption:
    before = len(admin.notices(g1, bot.user_id))
    await admin.send_file(
        g1, "a.csv", b"household\n3-1-101\n3-1-102\n", caption="/household import"
    )
    answer = await admin.notices_after(g1, bot.user_id, before, 1)
    assert "新增 2 户（3-1-101 … 3-1-102）" in answer[0]
    # as a reply to the file (not the latest one):
    older = await admin.send_file(g1, "b.csv", b"3-2-101\n")
    await admin.send_file(g1, "c.csv", b"3-9-101\n")
    answer = await admin.ask(
        g1, bot.user_id, f"> <{admin.user_id}> b.csv\n\n/household import",
        **{"m.relates_to": {"m.in_reply_to": {"event_id": older}}},
    )
    assert "新增 1 户（3-2-101）" in answer[0]
    # as the sender's next command after the file:
    await admin.send_file(g1, "d.csv", b"3-3-101\n3-3-102\n3-3-103\n")
    await admin.say(g1, "the register, as promised")
    answer = await admin.ask(g1, bot.user_id, "/household import")
    assert "新增 3 户（3-3-101 … 3-3-103）" in answer[0]
    # and a file counts for one command only.
    answer = await admin.ask(g1, bot.user_id, "/household import")
    assert "新增" not in answer[0]


async def test_long_text_file_pin_and_reply_from_the_outbox(bot, people):
    admin = people[0]
    room = await room_with_bot(
        admin, bot, "Board",
        power_level_override={"users": {bot.user_id: 50}},
    )
    earlier = await admin.say(room, "just a message")
    blocks = ["网" * 9000, "格" * 9000, "<b>&" * 2000]
    await _queue(bot, chat=room, text="\n\n".join(blocks), file_name="report.csv",
                 file_data=b"code,name\ng1,one\n", pin=True, reply_to=earlier)
    await eventually(lambda: admin.messages(room, bot.user_id, "m.file"), "the file")
    notices = admin.messages(room, bot.user_id, "m.notice")
    assert [n["body"] for n in notices] == blocks  # split where each fits in one event
    assert notices[0]["m.relates_to"] == {"m.in_reply_to": {"event_id": earlier}}
    assert notices[2]["formatted_body"] == "&lt;b&gt;&amp;" * 2000

    # A reply to something said in a thread goes into that thread.
    threaded = await admin.say(room, "in a thread", **{"m.relates_to": {
        "rel_type": "m.thread", "event_id": earlier, "is_falling_back": True,
        "m.in_reply_to": {"event_id": earlier},
    }})
    await _queue(bot, chat=room, text="answer in the thread", reply_to=threaded)
    await eventually(lambda: len(admin.messages(room, bot.user_id, "m.notice")) == 4, "the answer")
    assert admin.messages(room, bot.user_id, "m.notice")[3]["m.relates_to"] == {
        "rel_type": "m.thread", "event_id": earlier, "is_falling_back": False,
        "m.in_reply_to": {"event_id": threaded},
    }
    [file] = admin.messages(room, bot.user_id, "m.file")
    assert file["body"] == "report.csv"
    downloaded = await admin.client.download(mxc=file["url"])
    assert downloaded.body == b"code,name\ng1,one\n"
    pinned = await admin.client.room_get_state_event(room, "m.room.pinned_events")
    first = next(e for e in admin.events[room] if e["content"].get("body") == blocks[0])
    assert pinned.content["pinned"] == [first["event_id"]]


async def test_errand_claimed_with_one_tap_and_the_poster_told_directly(bot, people):
    admin, alice, bob = people
    hq = await _community(admin, bot)
    await admin.ask(hq, bot.user_id, "/grid add g1 一网格")
    g1 = await room_with_bot(admin, bot, "G1", alice, bob)
    await admin.ask(g1, bot.user_id, "/grid link g1")
    await alice.ask(g1, bot.user_id, "/join")

    posted = (await bob.ask(g1, bot.user_id, "/errand 买牛奶"))[0]
    assert posted.startswith("新代办 E1：买牛奶")
    await eventually(lambda: any(
        e["content"].get("body") == posted for e in alice.events[g1]
    ), "alice sees the errand")
    post = next(e for e in alice.events[g1] if e["content"].get("body") == posted)
    await eventually(lambda: any(
        e["type"] == "m.reaction" and e["content"]["m.relates_to"]["event_id"] == post["event_id"]
        for e in alice.events[g1]
    ), "the ✋ under the errand")

    before = len(alice.notices(g1, bot.user_id))
    await alice.react(g1, post["event_id"], "✋")
    [claimed] = await alice.notices_after(g1, bot.user_id, before, 1)
    assert claimed.startswith(f"✋ @{alice.localpart} 认领了 E1")
    # bob posted it: he hears about it in a direct room the bot opens for him.
    await eventually(lambda: bob.invites.keys() - {g1}, "bob's direct room")
    [dm] = bob.invites.keys() - {g1}
    await bob.join(dm)
    await eventually(lambda: bob.notices(dm, bot.user_id), "the DM to bob")
    assert bob.notices(dm, bot.user_id)[0].startswith("你发布的代办 E1「买牛奶」已由 @")


async def test_first_start_skips_history_but_accepts_invites(synapse, tmp_path, people):
    admin = people[0]
    bot = Bot(synapse, tmp_path, admins=(admin.user_id,))
    # The account was in use before gridbot ever ran: it sits in a room with a command in it.
    earlier = AsyncClient(synapse.url, bot.user_id, config=fail_fast_client_config())
    await earlier.login(BOT_PASSWORD)
    old = await admin.create_room("old", bot.user_id)
    await earlier.join(old)
    await admin.say(old, "/community 旧社区")
    await earlier.close()
    hq = await admin.create_room("HQ", bot.user_id)  # an invite waiting for the first start

    await bot.start()
    try:
        await eventually(lambda: admin.joined(hq, bot.user_id), "the bot accepting the invite")
        assert "阳光社区" in (await admin.ask(hq, bot.user_id, "/community 阳光社区"))[0]
        assert "旧社区" in (await admin.ask(old, bot.user_id, "/community 旧社区"))[0]
        assert len(admin.notices(old, bot.user_id)) == 1  # the answer to the new one only
    finally:
        await bot.stop()

"""The first command in a room the bot has just joined, on a real Synapse."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from tests.integration.matrix_helpers import ENCRYPTION, Bot, Member, eventually
from tests.servers.synapse import Synapse

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture
async def admin(synapse: Synapse, tmp_path):
    """The admin's client encrypts, as Element's does (the rooms here are plain unless a test
    makes them encrypted)."""
    member = await Member.register(synapse, "admin", store=tmp_path / "people")
    yield member
    await member.close()


@pytest_asyncio.fixture
async def bot(synapse: Synapse, tmp_path, admin):
    gridbot = Bot(synapse, tmp_path, admins=(admin.user_id,))
    await gridbot.start()
    yield gridbot
    await gridbot.stop()


def _hold_after_join(bot: Bot) -> asyncio.Event:
    """After joining a room the bot waits for the returned event before it syncs again, so
    what is said meanwhile arrives in the same sync as its own join."""
    go_on = asyncio.Event()
    accept = bot.transport._accept_invite

    async def accept_then_wait(*args, **kwargs):
        await accept(*args, **kwargs)
        await go_on.wait()

    bot.transport._accept_invite = accept_then_wait
    return go_on


async def _answers_settled(admin: Member, room: str, bot: Bot) -> list[str]:
    """The bot's notices in the room, once a later command has been answered (the bot
    answers a room's commands in order, so nothing earlier is still due)."""
    await admin.say(room, "/help")
    await eventually(lambda: any("/help <命令>" in n for n in admin.notices(room, bot.user_id)),
                     "the answer to /help")
    notices = admin.notices(room, bot.user_id)
    return [n for n in notices if "/help <命令>" not in n]


async def test_command_typed_as_soon_as_the_bot_joins_is_answered_once(bot, admin):
    room = await admin.create_room("HQ", bot.user_id)
    await eventually(lambda: admin.joined(room, bot.user_id), "the bot joining")
    await admin.say(room, "/community 幸福里社区")
    answers = await _answers_settled(admin, room, bot)
    assert answers == [answers[0]] and "已创建社区「幸福里社区」" in answers[0]


async def test_command_in_the_same_sync_as_the_join_is_answered_once(bot, admin):
    go_on = _hold_after_join(bot)
    room = await admin.create_room("HQ", bot.user_id)
    await eventually(lambda: admin.joined(room, bot.user_id), "the bot joining")
    await admin.say(room, "/community 幸福里社区")
    go_on.set()
    answers = await _answers_settled(admin, room, bot)
    assert len(answers) == 1 and "已创建社区「幸福里社区」" in answers[0]


async def test_in_an_encrypted_room_too(bot, admin):
    go_on = _hold_after_join(bot)
    room = await admin.create_room("HQ", bot.user_id, initial_state=[ENCRYPTION])
    await eventually(lambda: admin.joined(room, bot.user_id), "the bot joining")
    await admin.say(room, "/community 幸福里社区")
    go_on.set()
    answers = await _answers_settled(admin, room, bot)
    assert len(answers) == 1 and "已创建社区「幸福里社区」" in answers[0]
    assert all(e["event_id"] in admin.decrypted for e in admin.events[room]
               if e["sender"] == bot.user_id and e["type"] == "m.room.message")


async def test_commands_in_a_limited_timeline_after_the_join_are_answered_once(bot, admin):
    go_on = _hold_after_join(bot)
    room = await admin.create_room("HQ", bot.user_id)
    await eventually(lambda: admin.joined(room, bot.user_id), "the bot joining")
    await admin.say(room, "/community 幸福里社区")
    codes = [f"j{n}" for n in range(1, 31)]  # more than a sync's timeline holds
    for code in codes:
        await admin.say(room, f"/grid add {code} 网格{code}")
    go_on.set()
    answers = await _answers_settled(admin, room, bot)
    assert len(answers) == 1 + len(codes)
    assert "已创建社区「幸福里社区」" in answers[0]
    assert [a.split("「")[0] for a in answers[1:]] == [f"已创建网格 {c}" for c in codes]


async def test_history_from_before_the_join_is_not_answered(bot, admin):
    room = await admin.create_room("HQ")
    await admin.say(room, "/community 旧社区")
    await admin.say(room, "/help")
    go_on = _hold_after_join(bot)
    await admin.call(admin.client.room_invite, room, bot.user_id)
    await eventually(lambda: admin.joined(room, bot.user_id), "the bot joining")
    await admin.say(room, "/community 幸福里社区")
    go_on.set()
    answers = await _answers_settled(admin, room, bot)
    assert len(answers) == 1 and "已创建社区「幸福里社区」" in answers[0]
    assert not any("旧社区" in a for a in answers)

"""gridbot in end-to-end encrypted rooms on a real Synapse, with people whose nio clients
encrypt as Element does."""

from __future__ import annotations

import logging

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from bot.transports.matrix import MatrixTransport
from storage import models
from tests.integration.matrix_helpers import ENCRYPTION, Bot, Member, eventually, room_with_bot
from tests.servers.synapse import Synapse

pytestmark = pytest.mark.slow

PRIVATE = ("张三", "38.4", "咳嗽")  # the key person's name, temperature and symptom


@pytest_asyncio.fixture
async def people(synapse: Synapse, tmp_path):
    """An admin (in GRIDBOT_ADMINS) and two residents, alice and bob, each with encryption."""
    members = [await Member.register(synapse, name, store=tmp_path / "people")
               for name in ("admin", "alice", "bob")]
    yield members
    for member in members:
        await member.close()


@pytest_asyncio.fixture
async def bot(synapse: Synapse, tmp_path, people):
    gridbot = Bot(synapse, tmp_path / "bot", admins=(people[0].user_id,))
    await gridbot.start()
    yield gridbot
    await gridbot.stop()


async def encrypted_room(owner: Member, bot: Bot, name: str, *members: Member) -> str:
    room = await room_with_bot(owner, bot, name, *members, initial_state=[ENCRYPTION])
    assert owner.encrypted(room)
    return room


def bot_messages(member: Member, room: str, bot: Bot) -> list[dict]:
    return [e for e in member.events[room] if e["sender"] == bot.user_id
            and e["type"] in ("m.room.message", "m.room.encrypted")]


def assert_all_encrypted(member: Member, room: str, bot: Bot) -> None:
    """Everything the bot said in the room came encrypted, and the member could read it."""
    said = bot_messages(member, room, bot)
    assert said
    assert all(e["type"] == "m.room.message" and e["event_id"] in member.decrypted for e in said)


async def new_direct_room(member: Member, bot: Bot, known: set[str]) -> str:
    """The direct room the bot invites `member` to, joined."""
    await eventually(lambda: member.invites.keys() - known,
                     f"the bot's invite to {member.localpart}")
    [room] = member.invites.keys() - known
    assert member.invites[room].get("is_direct") is True
    await member.join(room)
    await eventually(lambda: member.client.rooms.get(room) is not None, "the direct room")
    return room


async def test_set_up_alert_and_digest_in_encrypted_rooms_with_a_restart(bot, people):
    admin, alice, bob = people

    hq = await encrypted_room(admin, bot, "HQ")
    # Typed as soon as the bot shows as joined, in an encrypted room: answered once.
    created = await admin.ask(hq, bot.user_id, "/community 幸福里社区")
    assert "已创建社区「幸福里社区」" in created[0]
    assert "已创建网格 g1" in (await admin.ask(hq, bot.user_id, "/grid add g1 一网格"))[0]

    g1 = await encrypted_room(admin, bot, "G1", alice, bob)
    assert "网格 g1「一网格」" in (await admin.ask(g1, bot.user_id, "/grid link g1"))[0]
    households = await admin.ask(g1, bot.user_id, "/household add 3-1-101 3-1-102")
    assert "新增 2 户" in households[0]
    assert f"欢迎 @{alice.localpart}" in (await alice.ask(g1, bot.user_id, "/join"))[0]

    # The bot stops; encrypted commands keep coming, and are answered once when it is back.
    device = bot.transport.client.device_id
    await bot.stop()
    await bob.say(g1, "/join worker")
    await alice.say(g1, "/watch add 3-1-102 张三 close-contact")
    await admin.say(hq, "/grid list")
    await bot.start()
    assert bot.transport.client.device_id == device  # the same device, with its keys

    await eventually(lambda: any("社区工作者" in n for n in bob.notices(g1, bot.user_id)),
                     "the answer to bob's /join")
    await eventually(lambda: any("已登记重点人员 K1" in n for n in alice.notices(g1, bot.user_id)),
                     "the answer to /watch add")
    await eventually(lambda: any("g1 一网格" in n for n in admin.notices(hq, bot.user_id)),
                     "the answer to /grid list")
    # Nothing twice: a later command is answered, and only one answer each came before it.
    await alice.ask(g1, bot.user_id, "/watch list")
    notices = alice.notices(g1, bot.user_id)
    assert sum("社区工作者" in n for n in notices) == 1
    assert sum("已登记重点人员 K1" in n for n in notices) == 1
    await admin.ask(hq, bot.user_id, "/help")
    assert sum("g1 一网格" in n for n in admin.notices(hq, bot.user_id)) == 1

    # alice follows up in her own encrypted direct chat with the bot: a fever.
    alice_dm = await alice.create_room("", bot.user_id, is_direct=True, initial_state=[ENCRYPTION])
    await eventually(lambda: alice.joined(alice_dm, bot.user_id), "the bot joining alice's DM")
    answer = (await alice.ask(alice_dm, bot.user_id, "/checkin K1 38.4 咳嗽"))[0]
    assert "38.4" in answer and "已预警" in answer
    # The secretary hears of it in an encrypted direct room the bot opens.
    admin_dm = await new_direct_room(admin, bot, {hq, g1})
    assert admin.encrypted(admin_dm)
    await eventually(lambda: admin.notices(admin_dm, bot.user_id), "the alert")
    [alert] = admin.notices(admin_dm, bot.user_id)
    assert all(detail in alert for detail in PRIVATE) and "K1" in alert

    # The digest, in HQ and in the grid room: the grid room sees no private detail.
    hq_digest = (await admin.ask(hq, bot.user_id, "/digest"))[0]
    assert "预警 1 次" in hq_digest
    g1_digest = (await admin.ask(g1, bot.user_id, "/digest"))[0]
    assert "预警 1 次" in g1_digest and "K1 3-1-102" in g1_digest

    for member, room in ((admin, hq), (admin, g1), (alice, g1), (bob, g1), (alice, alice_dm),
                         (admin, admin_dm)):
        assert_all_encrypted(member, room, bot)
    for member in (admin, alice, bob):
        said = " ".join(member.notices(g1, bot.user_id))
        assert not any(detail in said for detail in PRIVATE)
    async with bot.app.db.transaction() as db:
        assert await db.scalar(select(func.count()).select_from(models.CheckIn)) == 1
        assert await db.scalar(select(func.count()).select_from(models.KeyPerson)) == 1


async def test_buttons_files_and_replies_in_an_encrypted_room(bot, people):
    admin, alice, bob = people
    hq = await encrypted_room(admin, bot, "HQ")
    await admin.ask(hq, bot.user_id, "/community 幸福里社区")
    await admin.ask(hq, bot.user_id, "/grid add g1 一网格")
    g1 = await encrypted_room(admin, bot, "G1", alice, bob)
    await admin.ask(g1, bot.user_id, "/grid link g1")

    # A file with the command as its caption, encrypted as Element sends it.
    before = len(admin.notices(g1, bot.user_id))
    await admin.send_file(g1, "a.csv", b"household\n3-1-101\n3-1-102\n",
                          caption="/household import")
    answer = await admin.notices_after(g1, bot.user_id, before, 1)
    assert "新增 2 户（3-1-101 … 3-1-102）" in answer[0]
    await alice.ask(g1, bot.user_id, "/join")

    # Reactions as buttons: bob posts an errand, alice taps ✋.
    posted = (await bob.ask(g1, bot.user_id, "/errand 买牛奶"))[0]
    assert posted.startswith("新代办 E1：买牛奶")
    await eventually(lambda: any(e["content"].get("body") == posted for e in alice.events[g1]),
                     "alice sees the errand")
    post = next(e for e in alice.events[g1] if e["content"].get("body") == posted)
    await eventually(lambda: any(
        e["type"] == "m.reaction" and e["content"]["m.relates_to"]["event_id"] == post["event_id"]
        for e in alice.events[g1]
    ), "the ✋ under the errand")
    before = len(alice.notices(g1, bot.user_id))
    await alice.react(g1, post["event_id"], "✋")
    [claimed] = await alice.notices_after(g1, bot.user_id, before, 1)
    assert claimed.startswith(f"✋ @{alice.localpart} 认领了 E1")
    bob_dm = await new_direct_room(bob, bot, {g1})
    await eventually(lambda: bob.notices(bob_dm, bot.user_id), "the DM to bob")
    assert bob.notices(bob_dm, bot.user_id)[0].startswith("你发布的代办 E1「买牛奶」已由 @")

    # A file and a reply from the bot: the file is encrypted, the reply points at the command.
    asked = await admin.say(g1, "just a message")
    async with bot.app.db.transaction() as db:
        community = await db.scalar(select(models.Community))
        db.add(models.OutboxMessage(
            transport="matrix", community_id=community.id, chat=g1, text="名单见附件",
            file_name="list.csv", file_data=b"code,name\ng1,one\n", reply_to=asked,
            created_at=bot.app.clock.now(),
        ))
    await bot.app.outbox.deliver()
    await eventually(lambda: admin.messages(g1, bot.user_id, "m.file"), "the file")
    [file] = admin.messages(g1, bot.user_id, "m.file")
    assert "url" not in file and file["file"]["url"].startswith("mxc://")
    assert await admin.download(file) == b"code,name\ng1,one\n"
    raw = await admin.client.download(mxc=file["file"]["url"])
    assert b"g1,one" not in raw.body  # the homeserver holds only ciphertext
    notice = next(c for c in admin.messages(g1, bot.user_id, "m.notice") if c["body"] == "名单见附件")
    assert notice["m.relates_to"] == {"m.in_reply_to": {"event_id": asked}}
    for member in (admin, alice, bob):
        assert_all_encrypted(member, g1, bot)


async def test_a_message_the_bot_cannot_decrypt_is_logged_and_asked_again(bot, people, caplog):
    admin = people[0]
    caplog.set_level(logging.INFO, logger="bot.transports.matrix")
    hq = await encrypted_room(admin, bot, "HQ")
    await admin.ask(hq, bot.user_id, "/community 幸福里社区")

    # The admin's client encrypts with a room key it never gave the bot.
    olm = admin.client.olm
    olm.create_outbound_group_session(hq)
    olm.outbound_group_sessions[hq].shared = True
    lost = await admin.say(hq, "/grid add g1 一网格")
    await eventually(lambda: any("请再发一次" in n for n in admin.notices(hq, bot.user_id)),
                     "the bot asking to send again")
    asking = next(c for c in admin.messages(hq, bot.user_id, "m.notice") if "请再发一次" in c["body"])
    assert asking["body"].startswith(f"@{admin.localpart}：")
    assert asking["m.relates_to"] == {"m.in_reply_to": {"event_id": lost}}
    assert f"cannot decrypt {lost}" in caplog.text and "asking the sender's device" in caplog.text

    # Sent again with a key the bot has: answered.
    admin.client.invalidate_outbound_session(hq)
    assert "已创建网格 g1" in (await admin.ask(hq, bot.user_id, "/grid add g1 一网格"))[0]
    async with bot.app.db.transaction() as db:
        assert await db.scalar(select(func.count()).select_from(models.Grid)) == 1

    # The bot stopping while a message waits for its key: the sender is asked at once.
    olm.create_outbound_group_session(hq)
    olm.outbound_group_sessions[hq].shared = True
    waiting = await admin.say(hq, "/grid add g2 二网格")
    await eventually(lambda: f"cannot decrypt {waiting}" in caplog.text, "the bot seeing it")
    await bot.stop()

    def asked_again() -> bool:
        return any((c.get("m.relates_to") or {}).get("m.in_reply_to") == {"event_id": waiting}
                   for c in admin.messages(hq, bot.user_id, "m.notice"))

    await eventually(asked_again, "the bot asking again as it stops")


async def test_key_store_survives_restarts_and_a_lost_store_means_a_new_device(bot, people):
    admin = people[0]
    hq = await encrypted_room(admin, bot, "HQ")
    await admin.ask(hq, bot.user_id, "/community 幸福里社区")
    device = bot.transport.client.device_id
    store = bot.config.data_dir / "matrix-store"
    assert (store / f"{bot.user_id}_{device}.db").exists()
    # A second process on the same key store is refused.
    with pytest.raises(RuntimeError, match="another gridbot process uses the Matrix key store"):
        await MatrixTransport(bot.config).start(bot.app)

    await bot.stop()
    await bot.start()
    assert bot.transport.client.device_id == device
    assert "已创建网格 g1" in (await admin.ask(hq, bot.user_id, "/grid add g1 一网格"))[0]
    # The restarted bot still reads what it said before (its own keys were kept).
    said = next(e for e in admin.events[hq] if e["sender"] == bot.user_id
                and e["type"] == "m.room.message")
    again = await bot.transport.client.room_get_event(hq, said["event_id"])
    assert getattr(again.event, "body", None) == said["content"]["body"]

    # Without its keys the old device is useless: the bot logs in as a new one, and people's
    # clients share their room keys with it from then on.
    await bot.stop()
    (store / f"{bot.user_id}_{device}.db").unlink()
    await bot.start()
    assert bot.transport.client.device_id != device
    assert "已创建网格 g2" in (await admin.ask(hq, bot.user_id, "/grid add g2 二网格"))[0]
    assert_all_encrypted(admin, hq, bot)


async def test_verified_policy_gives_room_keys_only_to_listed_devices(synapse, tmp_path, people):
    admin, alice, _ = people
    bot = Bot(synapse, tmp_path / "bot", admins=(admin.user_id,), matrix_trust="verified")
    store = bot.config.data_dir / "matrix-store"
    store.mkdir(parents=True)
    identity = admin.client.olm.account.identity_keys["ed25519"]
    (store / "trusted-devices").write_text(
        f"# the secretary's phone\n{admin.user_id} {admin.client.device_id} {identity}\n"
    )
    await bot.start()
    try:
        hq = await encrypted_room(admin, bot, "HQ", alice)
        # alice's device is not listed: what she says is read, but she cannot read the answers.
        before = len(admin.notices(hq, bot.user_id))
        await alice.say(hq, "/help")
        [answer] = await admin.notices_after(hq, bot.user_id, before, 1)
        assert "/help <命令>" in answer
        await eventually(lambda: bot_messages(alice, hq, bot), "the answer reaching alice")
        assert all(e["type"] == "m.room.encrypted" for e in bot_messages(alice, hq, bot))
        assert_all_encrypted(admin, hq, bot)
    finally:
        await bot.stop()


async def test_a_member_who_leaves_gets_no_later_room_keys(bot, people):
    admin, alice, bob = people
    hq = await encrypted_room(admin, bot, "HQ", alice, bob)
    await admin.ask(hq, bot.user_id, "/community 幸福里社区")
    client = bot.transport.client

    def readers() -> set[str]:
        return {user for user, _ in client.olm.outbound_group_sessions[hq].users_shared_with}

    assert {admin.user_id, alice.user_id, bob.user_id} <= readers()
    first = client.olm.outbound_group_sessions[hq].id
    await bob.call(bob.client.room_leave, hq)
    await eventually(lambda: bob.user_id not in client.rooms[hq].users, "the bot seeing bob leave")
    await alice.ask(hq, bot.user_id, "/help")
    assert client.olm.outbound_group_sessions[hq].id != first  # a new key after the leave
    assert bob.user_id not in readers() and {admin.user_id, alice.user_id} <= readers()
    for member in (admin, alice):
        assert_all_encrypted(member, hq, bot)

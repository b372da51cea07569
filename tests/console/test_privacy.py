"""Residents' health details reach only those who need them (issue: privacy and
authorisation), decided from the viewer and the chat, through the console transport.

The table-driven test types each reading command as each kind of viewer in each kind of
chat and scans every reply for names, phone numbers, temperatures and symptoms.
"""

from __future__ import annotations

import pytest

from tests.harness import parse_blocks, setup_community

NAME, OTHER_NAME = "张三丰", "李四光"
PRIVATE = (NAME, OTHER_NAME, "38.6", "咳嗽", "13800138000", "疫区来返", "密切接触者")

# Who may see K1's details: its watcher, its grid's leader, the secretaries, the admin.
ALLOWED = {"wang", "lead", "sec", "admin"}
VIEWERS = ("wang", "lead", "sec", "admin", "li", "zhou", "res", "oldsec", "gone")
CHATS = ("g1chat", "g2chat", "hq", "dm")
READING = ("/watch", "/watch list", "/history K1", "/coverage", "/me", "/digest", "/grid list")


def private_words(text: str) -> list[str]:
    return [word for word in PRIVATE if word in text]


async def scenario(bot) -> None:
    """g1: K1 (张三丰, watched by wang) with a fever check-in, K2 (李四光) watched by `gone`,
    who then leaves; a second secretary `sec`; `oldsec`, a secretary removed again; `zhou`
    a member of g2; `res` a resident who never joined."""
    await setup_community(bot)
    await bot.say(
        ":as admin", ":in hq", "/role @sec secretary", "/role @oldsec secretary",
        ":in g2chat", ":as zhou", "/join",
        ":in g1chat", ":as gone", "/join",
        ":as wang", ":dm", f"/watch add 3-1-102 {NAME} 疫区 until=2026-02-24",
        "/checkin K1 38.6 咳嗽",
        ":as gone", ":dm", f"/watch add 3-1-201 {OTHER_NAME} close-contact",
        ":in g1chat", "/leave",
        ":as sec", ":in hq", "/role @oldsec none",
        ":as oldsec", ":in hq", "/help",  # oldsec speaks once, so its DM is known
    )


@pytest.fixture
async def privacy(bot):
    await scenario(bot)
    return bot


async def test_every_reading_command_shows_details_only_where_the_rule_allows(privacy):
    bot = privacy
    shown_to: set[str] = set()
    for viewer in VIEWERS:
        for chat in CHATS:
            where = ":dm" if chat == "dm" else f":in {chat}"
            for line in READING:
                out = await bot.say(f":as {viewer}", where, line)
                for block in out:
                    found = private_words(block.text)
                    if not found:
                        continue
                    allowed = block.chat == "hq" or (
                        block.chat == f"dm:{viewer}" and viewer in ALLOWED
                    )
                    assert allowed, (viewer, chat, line, block.chat, found)
                    if block.chat.startswith("dm:"):
                        shown_to.add(viewer)
    # The rule must not simply hide everything: each allowed viewer sees K1 in a DM.
    assert shown_to == ALLOWED


async def test_no_group_chat_but_hq_ever_carried_a_private_detail(privacy):
    bot = privacy
    # Hostile and careless typing in the group: a phone number, a name where a household
    # goes, a temperature glued to a symptom.
    await bot.say(
        ":as wang", ":in g1chat", "/screen 3-1-101 ok 电话13800138000 extra=1",
        f"/watch add {NAME} 3-1-101 close-contact", "/checkin K1 38.6咳嗽",
        f"/checkin {NAME} 38.6", "/screen 3-1-101 fine temp=38.6",
        ":as res", f"/errand 给{NAME}买药 for=13800138000",
    )
    for block in parse_blocks(bot.stdout.getvalue()):
        if block.chat.startswith("dm:") or block.chat == "hq":
            continue
        assert private_words(block.text) == [], (block.chat, block.text)


async def test_a_removed_secretary_and_a_member_who_left_get_nothing_more(privacy):
    bot = privacy
    mark = len(parse_blocks(bot.stdout.getvalue()))
    # A new alert, overdue reminders and the evening digest, after the changes.
    await bot.say(":as wang", ":dm", "/checkin K1 39.1 乏力", ":wait 30h")
    later = parse_blocks(bot.stdout.getvalue())[mark:]
    to_oldsec = [b.text for b in later if b.chat == "dm:oldsec"]
    to_gone = [b.text for b in later if b.chat == "dm:gone"]
    assert to_oldsec == [] and to_gone == []
    told = {b.chat for b in later if "39.1" in b.text and b.chat.startswith("dm:")}
    assert told == {"dm:wang", "dm:lead", "dm:sec", "dm:admin"}  # wang typed it: the reply


async def test_leaving_hands_key_persons_to_the_leaders(bot):
    await setup_community(bot)
    await bot.say(":as li", ":dm", f"/watch add 3-1-201 {OTHER_NAME} close-contact")
    out = await bot.say(":as li", ":in g1chat", "/leave")
    assert "已交还网格长" in out.text("g1chat")
    told = out.text("dm:lead")
    assert "K1" in told and "/watch assign K1" in told and "没有跟进人" in told
    out = await bot.say(":as lead", ":dm", "/watch")
    assert "跟进人 无" in out.text()
    # Li is nobody in g1 now: no reminder reaches them when K1 is overdue.
    out = await bot.say(":wait 30h")
    assert "dm:li" not in out.chats()
    out = await bot.say(":as li", ":dm", "/watch")
    assert OTHER_NAME not in out.text()

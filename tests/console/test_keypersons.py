"""Key persons: watchers, check-ins, alerts, overdue reminders and privacy, through the
console transport."""

from __future__ import annotations

from tests.harness import parse_blocks

# What must never reach a grid's group chat: residents' names, temperatures, symptoms.
PRIVATE = ("张三", "李四", "38.4", "36.7", "咳嗽", "乏力")


def group_output(bot) -> str:
    """Everything the bot said in group chats other than the HQ chat, since it started."""
    blocks = parse_blocks(bot.stdout.getvalue())
    return "\n".join(b.text for b in blocks if not b.chat.startswith("dm:") and b.chat != "hq")


def dm_blocks(out, user: str) -> list[str]:
    return out.texts(f"dm:{user}")


async def test_the_group_sees_only_the_id_and_household(community):
    bot = community
    out = await bot.say(":as wang", ":in g1chat", "/watch add 3-1-102 张三 疫区 until=2026-02-24")
    # A name typed in the group: stored, answered without it, and the sender is asked to
    # use a direct chat (the console cannot delete what was typed).
    assert out.chats() == ["g1chat", "dm:wang"]
    assert "K1" in out.text("g1chat") and "3-1-102" in out.text("g1chat")
    assert "@wang" in out.text("g1chat") and "私聊" in out.text("dm:wang")
    out = await bot.say("/watch add 3-1-201 李四 close-contact watcher=@li")
    assert "K2" in out.text("g1chat") and "3-1-201" in out.text("g1chat")
    assert "李四" in out.text("dm:li") and "密切接触者" in out.text("dm:li")

    out = await bot.say("/watch")
    listing = out.text("g1chat")
    assert listing.index("K1") < listing.index("K2")  # wang's own first
    out = await bot.say(":as li", "/watch list")
    listing = out.text("g1chat")
    assert listing.index("K2") < listing.index("K1")  # li's own first
    assert "重点人员 2 人" in listing

    out = await bot.say(":dm", "/watch")  # a direct chat shows li the details of li's own
    assert "李四" in out.text("dm:li") and "张三" not in out.text("dm:li")  # not wang's
    out = await bot.say(":as lead", ":dm", "/watch")  # the grid's leader sees both
    assert "张三" in out.text("dm:lead") and "李四" in out.text("dm:lead")
    out = await bot.say(":as admin", ":in hq", "/watch")  # so does the HQ chat
    assert "张三，疫区来返" in out.text("hq") and "网格 g1" in out.text("hq")

    out = await bot.say(":as admin", ":in g2chat", "/watch")
    assert "暂无重点人员" in out.text()
    for word in PRIVATE + ("疫区", "密切接触"):
        assert word not in group_output(bot)


async def test_watch_add_explains_bad_input_and_refuses_residents(community):
    bot = community
    await bot.say(":as admin", ":in g2chat", "/household add 7-1-101")
    usage = "/watch add <household> <name> <epidemic-area|home-observation|fever|close-contact>"
    out = await bot.say(":as wang", ":in g1chat", "/watch add 3-1-999 张三 fever")
    assert "3-1-999" in out.text() and "相近的户号" in out.text() and usage in out.text()
    out = await bot.say("/watch add 3-1-101 张三 flu")
    assert "flu" not in out.text() and "无效" in out.text() and usage in out.text()  # no echo
    out = await bot.say("/watch add 3-1-101 张三 fever until=2026-02-01")
    assert "已经过去" in out.text()
    out = await bot.say("/watch add 3-1-101 张三 fever watcher=@zhao")
    assert "@zhao 不是网格 g1 的成员" in out.text()
    out = await bot.say("/watch add 7-1-101 张三 fever")
    assert "属于网格 g2" in out.text()
    out = await bot.say(":as zhao", "/watch add 3-1-101 张三 fever")
    assert "需要先报到成为网格员" in out.text()

    out = await bot.say(":as wang", "/watch add 3-1-101 张三 发热")  # nothing was numbered before
    assert "K1" in out.text()
    assert "张三" not in group_output(bot)


async def test_only_the_watcher_or_a_leader_may_check_in(community):
    bot = community
    await bot.say(":as wang", ":in g1chat", "/watch add 3-1-102 张三 home-observation")
    usage = "/checkin <K> <temp> [symptoms…]"
    out = await bot.say(":as li", "/checkin K1 36.7")
    assert "只有 K1 的跟进人（@wang）或网格长" in out.text()
    out = await bot.say(":as zhao", "/checkin K1 36.7")
    assert "需要先报到成为网格员" in out.text()
    out = await bot.say(":as lead", "/checkin K1 36.7")
    assert out.chats() == ["g1chat", "dm:lead"] and "K1（住户 3-1-102）已随访" in out.text("g1chat")
    out = await bot.say(":as wang", ":dm", "/checkin 1 36.7 ok")  # in a direct chat, by number
    assert "36.7°C，无症状" in out.text("dm:wang")
    out = await bot.say(":in g1chat", "/checkin K9 36.7")
    assert "没有 K9" in out.text() and usage in out.text()
    out = await bot.say("/checkin K1 45")
    assert "34–43" in out.text() and usage in out.text()
    out = await bot.say("/checkin K1")
    assert usage in out.text()

    out = await bot.say(":as admin", ":in hq", "/coverage")
    assert "重点人员：1/1" in out.text()
    for word in PRIVATE:
        assert word not in group_output(bot)


async def test_an_alert_reaches_exactly_the_grid_leaders_and_the_secretary(community):
    bot = community
    await bot.say(":as admin", ":in g2chat", "/role @zhou leader")  # not g1's leader
    await bot.say(":as zhou", "/join")
    await bot.say(":as wang", ":in g1chat", "/watch add 3-1-102 张三 close-contact")

    out = await bot.say("/checkin K1 38.4 咳嗽")
    assert sorted(out.chats()) == ["dm:admin", "dm:lead", "g1chat"]  # (wang was asked to use a DM)
    for user in ("admin", "lead"):
        [alert] = dm_blocks(out, user)
        assert "K1" in alert and "张三" in alert and "38.4" in alert and "咳嗽" in alert
        assert "3-1-102" in alert and "@wang" in alert
    assert "K1" in out.text("g1chat") and "已预警" in out.text("g1chat")

    out = await bot.say("/checkin K1 36.7 乏力")  # a symptom alone is an alert
    assert sorted(out.chats()) == ["dm:admin", "dm:lead", "g1chat"]  # wang was asked today
    assert "乏力" in out.text("dm:lead")

    out = await bot.say("/checkin K1 36.7 ok")
    assert out.chats() == ["g1chat"]

    # A leader checking in: the watcher hears of it instead of the leader who typed it.
    out = await bot.say(":as lead", "/checkin K1 38.4")
    # dm:lead: asked, once today, to type temperatures in a direct chat
    assert sorted(out.chats()) == ["dm:admin", "dm:lead", "dm:wang", "g1chat"]

    for word in PRIVATE:
        assert word not in group_output(bot)


async def test_an_overdue_key_person_is_reminded_once_per_window_and_listed(community):
    bot = community
    await bot.say(":as admin", ":in hq", "/set followup 2h")
    await bot.say(":as wang", ":in g1chat", "/watch add 3-1-102 张三 epidemic-area")

    out = await bot.say(":wait 1h50m")
    assert out == []
    out = await bot.say(":wait 20m")  # past 2 h: one reminder, to the watcher only
    assert out.chats() == ["dm:wang"]
    assert "K1" in out.text() and "张三" in out.text() and "3-1-102" in out.text()
    out = await bot.say("/watch")
    assert "⚠️已超时" in out.text() and "1 人超时未随访" in out.text()
    out = await bot.say("/coverage")
    assert "重点人员：0/1" in out.text() and "1 人超时未随访" in out.text()

    out = await bot.say(":wait 1h50m")  # the same window: no second reminder
    assert out == []
    out = await bot.say(":wait 10m")  # the next window
    assert out.chats() == ["dm:wang"]

    await bot.restart()  # a rerun of the sweep after a restart sends nothing twice
    out = await bot.say(":wait 30m")
    assert out == []

    out = await bot.say("/checkin K1 36.7")
    assert "K1" in out.text()
    out = await bot.say(":wait 1h55m", "/watch")
    assert out.chats() == ["g1chat"] and "超时" not in out.text()
    assert "张三" not in group_output(bot) and "36.7" not in group_output(bot)


async def test_default_window_reminds_after_24_hours_and_until_ends_observation(community):
    bot = community
    await bot.say(":as wang", ":in g1chat",
                  "/watch add 3-1-101 张三 fever until=today", "/watch add 3-1-102 李四 fever")
    out = await bot.say(":wait 24h")  # (the daily digest goes out on the way)
    # K1's observation ended after its last day; K2 is due but not yet past the window.
    assert [c for c in out.chats() if c.startswith("dm:")] == ["dm:wang"]
    assert "K1" in out.text("dm:wang") and "结束" in out.text("dm:wang")
    out = await bot.say(":wait 10m")
    assert out.chats() == ["dm:wang"] and "K2" in out.text() and "李四" in out.text()
    out = await bot.say("/watch")
    assert "K1" not in out.text() and "K2" in out.text()


async def test_leaders_assign_and_release_watchers(community):
    bot = community
    await bot.say(":as admin", ":in hq", "/set followup 2h")
    await bot.say(":as wang", ":in g1chat", "/watch add 3-1-102 张三 fever")
    out = await bot.say("/watch assign K1 @li")
    assert "需要「网格长」" in out.text()

    out = await bot.say(":as lead", "/watch assign K1 @li")
    assert sorted(out.chats()) == ["dm:li", "dm:wang", "g1chat"]
    assert "@li" in out.text("g1chat")
    assert "张三" in out.text("dm:li") and "@lead" in out.text("dm:li")
    assert "不用再随访" in out.text("dm:wang")
    out = await bot.say("/watch assign K1 @li")
    assert "已经是 K1 的跟进人" in out.text()
    out = await bot.say("/watch assign K1 @zhao")
    assert "不是网格 g1 的成员" in out.text()
    out = await bot.say("/watch assign K9 @li")
    assert "没有 K9" in out.text() and "/watch assign <K> @user" in out.text()
    out = await bot.say(":as wang", "/checkin K1 36.7")  # no longer wang's
    assert "只有 K1 的跟进人（@li）" in out.text()

    out = await bot.say(":as lead", "/watch release K1")
    assert sorted(out.chats()) == ["dm:li", "g1chat"] and "K1" in out.text("g1chat")
    out = await bot.say("/watch")
    assert "暂无重点人员" in out.text()
    out = await bot.say("/watch release K1")
    assert "已于" in out.text() and "解除观察" in out.text()
    out = await bot.say(":as li", "/checkin K1 36.7")
    assert "解除观察" in out.text()
    out = await bot.say(":as admin", ":in g2chat", "/watch release K1")
    assert "解除观察" in out.text()

    out = await bot.say(":wait 3h")  # a released key person is no one's to remind
    assert out == []
    assert "张三" not in group_output(bot)


async def test_a_key_person_of_another_grid_is_managed_there(community):
    bot = community
    await bot.say(":as admin", ":in g2chat", "/household add 7-1-101", "/role @zhou leader")
    await bot.say(":as zhou", "/join", "/watch add 7-1-101 张三 fever")
    out = await bot.say(":as lead", ":in g1chat", "/watch release K1")
    assert "K1 属于网格 g2" in out.text()
    out = await bot.say("/checkin K1 36.7")
    assert "只有 K1 的跟进人（@zhou）或网格长" in out.text()
    out = await bot.say("/watch")
    assert "暂无重点人员" in out.text()


async def test_digest_sections_name_overdue_persons_and_alerts_only_where_private(community):
    bot = community
    await bot.say(":as admin", ":in hq", "/set followup 2h")
    await bot.say(":as wang", ":in g1chat", "/watch add 3-1-101 张三 fever",
                  "/watch add 3-1-102 李四 fever", "/checkin K2 38.4 咳嗽")
    await bot.say(":wait 2h10m")
    out = await bot.say(":as admin", ":in hq", "/digest")
    hq = out.text("hq")
    assert "重点人员 2 人" in hq
    assert "超时未随访 2 人：K1 3-1-101 张三" in hq
    assert "近 24 小时预警 1 次：K2 3-1-102（38.4°C，咳嗽）" in hq

    out = await bot.say(":as lead", ":in g1chat", "/digest")
    assert "超时未随访 2 人：K1 3-1-101（跟进人 @wang" in out.text("g1chat")
    assert "近 24 小时预警 1 次：K2 3-1-102 " in out.text("g1chat")

    out = await bot.say(":as admin", ":in g2chat", "/digest")
    assert "没有超时未随访的重点人员" in out.text() and "近 24 小时没有预警" in out.text()

    out = await bot.say(":clock 2026-02-10T20:01")  # the daily digest, to HQ and each grid chat
    assert "张三" in out.text("hq")
    for word in PRIVATE:
        assert word not in group_output(bot)


async def test_replies_in_english(community):
    bot = community
    await bot.say(":as admin", ":in hq", "/set lang en")
    out = await bot.say(":as wang", ":in g1chat", "/watch add 3-1-102 张三 fever watcher=@li")
    assert "Key person K1 registered: household 3-1-102; watcher @li." in out.text("g1chat")
    assert "made you the watcher of key person K1" in out.text("dm:li")
    out = await bot.say(":as li", "/checkin K1 38.4 咳嗽")
    assert "Key person alert: K1 张三" in out.text("dm:lead")
    assert "Alert raised" in out.text("g1chat")
    out = await bot.say("/watch")
    assert "Key persons of grid g1: 1" in out.text() and "(me)" in out.text()
    out = await bot.say(":as lead", "/digest")
    assert "No key person overdue." in out.text() and "Alerts in the last 24 h (1)" in out.text()
    out = await bot.say("/watch release K1")
    assert "K1 (household 3-1-102) released" in out.text("g1chat")
    for word in PRIVATE:
        assert word not in group_output(bot)

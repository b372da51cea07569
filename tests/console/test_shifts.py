"""Duty shifts through the console transport: posts and shifts, sign-up up to the limit and
the waiting list, moving up on /unsign, swaps, the rest rules, reminders across a restart,
the leader's alert at the start, hours credited after the end (not for a no-show), the
digest section, a leaving member's sign-ups, bad input and refusals.

The clock starts at 2026-02-10 09:00 (Asia/Shanghai); "tomorrow" is 2026-02-11.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from storage import models
from tests.harness import ConsoleBot, setup_community


async def states(bot, number: int) -> dict[str, str]:
    """Who is on shift S<number>, and how: {'wang': 'slot', 'li': 'waiting'}."""
    async with bot.app.db.transaction() as db:
        rows = await db.execute(
            select(models.Person.external_id, models.SignUp.state)
            .join(models.SignUp, models.SignUp.person_id == models.Person.id)
            .join(models.Shift, models.Shift.id == models.SignUp.shift_id)
            .where(models.Shift.number == number)
            .order_by(models.SignUp.id)
        )
        return dict(rows.all())


async def shift_row(bot, number: int) -> models.Shift:
    async with bot.app.db.transaction() as db:
        return await db.scalar(select(models.Shift).where(models.Shift.number == number))


async def join(bot, *users: str) -> None:
    await bot.say(":in g1chat", *(line for u in users for line in (f":as {u}", "/join")))


async def posts(bot) -> None:
    await bot.say(":as lead", ":in g1chat", "/post add 卡口 北门", "/post add 巡查")


# --- posts and shifts -------------------------------------------------------------------


async def test_leader_adds_posts_and_shifts_each_with_a_signup_button(community):
    out = await community.say(":as lead", ":in g1chat", "/post add 卡口 北门")
    assert "已添加值班岗位「卡口」（北门）" in out.text("g1chat")
    out = await community.say("/post add 卡口 南门")
    assert "本网格已有同名的值班岗位" in out.text("g1chat")
    out = await community.say("/post")
    assert "卡口（北门）" in out.text("g1chat")

    out = await community.say("/shift add 卡口 tomorrow 08:00-12:00 slots=2")
    posted = out.text("g1chat")
    assert "新值班 S1 卡口（北门） 02-11 08:00–12:00，2 个名额" in posted
    assert "[报名: /signup S1]" in posted  # the button, degraded to a hint on the console
    async with community.app.db.transaction() as db:
        message = await db.scalar(select(models.OutboxMessage).where(models.OutboxMessage.ref == "S1"))
    assert message.buttons == [{"label": "报名", "command": "/signup S1", "emoji": "✋"}]

    # A night shift runs past midnight; a daily series gives one S per day.
    out = await community.say("/shift add 卡口 明天 22:00-06:00 repeat=daily until=2026-02-13")
    posted = out.text("g1chat")
    for number, day in ((2, "02-11"), (3, "02-12"), (4, "02-13")):
        assert f"S{number} 卡口（北门） {day} 22:00–次日06:00" in posted
        assert f"/signup S{number}]" in posted
    night = await shift_row(community, 2)
    assert (night.ends_at - night.starts_at).total_seconds() == 8 * 3600
    assert night.slots == 1


async def test_bad_input_gets_a_reply_naming_what_was_wrong(community):
    await posts(community)
    cases = [
        ("/shift add 卡口 2026-02-09 08:00-12:00", "开始时间 02-09 08:00 已经过去"),
        ("/shift add 卡口 today 08:00-09:00", "开始时间 02-10 08:00 已经过去"),
        ("/shift add 卡口 tomorrow 08:00-08:00", "开始和结束时间都是 08:00"),
        # What was typed is not repeated in a group; the reply names the part that was wrong.
        ("/shift add 卡口 tomorrow 08:00-12:00 slots=0", "超出范围（1–200）"),
        ("/shift add 卡口 tomorrow 08:00-12:00 slots=-2", "超出范围（1–200）"),
        ("/shift add 测温 tomorrow 08:00-12:00", "本网格没有这个值班岗位。已有岗位：卡口、巡查"),
        ("/shift add 卡口 2026-02-30 08:00-12:00", "日期「…」无效"),
        ("/shift add 卡口 tomorrow 25点-26点", "时间「…」无效"),  # `8点-12点` is fine
        ("/shift add 卡口 tomorrow 08:00-12:00 repeat=daily", "repeat=daily 和 until=<截止日期>"),
        ("/shift add 卡口 2026-02-12 08:00-12:00 repeat=daily until=2026-02-11",
         "截止日期 2026-02-11 早于开始日期 2026-02-12"),
        ("/shift add 卡口 tomorrow 08:00-12:00 repeat=daily until=2026-04-01",
         "一次最多排 31 天，这次是 50 天"),
        ("/signup S9", "没有 S9"),
        ("/unsign S1", "没有 S1"),
        ("/signup X1", "S"),
    ]
    for line, expected in cases:
        out = await community.say(line)
        assert expected in out.text("g1chat"), (line, out.text())
    assert await shift_row(community, 1) is None
    # The forms of a date the converter reads today: ISO, today/tomorrow, 今天/明天.
    out = await community.say("/shift add 卡口 明天 08:00-12:00", "/shift add 卡口 2026-02-12 08:00-12:00")
    assert "S1 卡口（北门） 02-11 08:00" in out.text() and "S2 卡口（北门） 02-12 08:00" in out.text()


async def test_only_leaders_add_posts_and_shifts_and_only_in_a_grid_chat(community):
    await posts(community)
    out = await community.say(":as wang", "/post add 测温", "/shift add 卡口 tomorrow 08:00-12:00")
    assert out.texts("g1chat") == ["/post add 需要「网格长」或以上角色。",
                                   "/shift add 需要「网格长」或以上角色。"]
    out = await community.say(":as zhang", "/signup S1")
    assert "/signup 需要先报到成为网格员：请在本群发送 /join" in out.text("g1chat")
    out = await community.say(":as admin", ":in hq", "/shift add 卡口 tomorrow 08:00-12:00")
    assert "/shift add 请在你所在网格的群聊中使用" in out.text("hq")


# --- sign-up, the waiting list, moving up -----------------------------------------------


async def test_signup_up_to_the_limit_then_the_waiting_list_moves_up_in_order(community):
    await join(community, "v1", "v2")
    await posts(community)
    await community.say("/shift add 卡口 tomorrow 08:00-12:00 slots=2")
    out = await community.say(":as wang", "/signup S1")
    assert "✋ @wang 报名了 S1 卡口（北门） 02-11 08:00–12:00（1/2）" in out.text("g1chat")
    out = await community.say(":as li", "/signup S1")
    assert "（2/2，已满）" in out.text("g1chat")
    out = await community.say(":as v1", "/signup S1", ":as v2", "/signup S1")
    assert "@v1 已列入候补第 1 位" in out.text("g1chat")
    assert "@v2 已列入候补第 2 位" in out.text("g1chat")
    out = await community.say("/signup S1")
    assert "你已在 S1 的候补名单上（第 2 位）" in out.text("g1chat")
    out = await community.say("/me")
    assert "即将到来的值班：S1 卡口 02-11 08:00–12:00（候补）" in out.text("g1chat")
    assert await states(community, 1) == {"wang": "slot", "li": "slot", "v1": "waiting", "v2": "waiting"}

    out = await community.say(":as wang", "/unsign S1")
    assert "@wang 取消了 S1 卡口（北门） 02-11 08:00–12:00 的报名。候补 @v1 已递补。" in out.text("g1chat")
    assert "现在 2/2" in out.text("g1chat")
    assert out.chats().count("dm:v1") == 1
    assert "你已从候补递补上 S1 卡口（北门） 02-11 08:00–12:00" in out.text("dm:v1")
    assert "dm:v2" not in out.chats()
    assert await states(community, 1) == {"li": "slot", "v1": "slot", "v2": "waiting"}

    out = await community.say(":as v2", "/unsign S1")
    assert "@v2 已退出 S1 的候补名单" in out.text("g1chat")
    out = await community.say(":as li", "/unsign S1")
    assert "现在 1/2，还缺 1 人" in out.text("g1chat")
    out = await community.say("/unsign S1")
    assert "你没有报名 S1" in out.text("g1chat")
    assert await states(community, 1) == {"v1": "slot"}

    out = await community.say(":as v1", "/shifts mine")
    assert "S1 卡口（北门） 02-11 08:00–12:00 · 1/2 ⚠缺 1 人 · @v1" in out.text("g1chat")
    out = await community.say("/me")
    assert "即将到来的值班：S1 卡口 02-11 08:00–12:00" in out.text("g1chat")


async def test_a_move_up_that_would_break_a_rest_rule_skips_that_person(community):
    await join(community, "v1")
    await posts(community)
    await community.say("/shift add 卡口 tomorrow 08:00-12:00", "/shift add 巡查 tomorrow 10:00-14:00")
    await community.say(":as wang", "/signup S1", ":as li", "/signup S1")
    # li waits for S1, then takes S2, which overlaps it (waiting holds no time).
    out = await community.say("/signup S2", ":as v1", "/signup S1")
    assert "@li 报名了 S2" in out.text("g1chat") and "@v1 已列入候补第 2 位" in out.text("g1chat")

    out = await community.say(":as wang", "/unsign S1")
    assert "候补 @v1 已递补" in out.text("g1chat")
    skipped = out.text("dm:li")
    assert "S1 有了空位，但你不能递补，已移出候补名单" in skipped
    assert "同一人的值班时间不能重叠" in skipped and "S2 巡查 02-11 10:00–14:00" in skipped
    assert "你已从候补递补上 S1" in out.text("dm:v1")
    assert await states(community, 1) == {"v1": "slot"}


async def test_signup_is_refused_after_the_start_and_in_another_grid(community):
    await posts(community)
    await community.say("/shift add 卡口 today 10:00-12:00")
    out = await community.say(":as admin", ":in g2chat", "/signup S1")
    assert "S1 属于网格 g1「一网格」，请在那个网格办理" in out.text("g2chat")
    out = await community.say(":as wang", "/signup S1")
    assert "/signup 请在你所在网格的群聊中使用" in out.text("g2chat")  # wang is of g1
    out = await community.say(":in g1chat", ":wait 90m", "/signup S1")
    assert "S1 卡口（北门） 02-10 10:00–12:00 已经开始，不能再报名、取消或换班" in out.text("g1chat")
    assert await states(community, 1) == {}


# --- swaps ------------------------------------------------------------------------------


async def test_swap_is_offered_and_accepted_with_signup(community):
    await posts(community)
    await community.say("/shift add 卡口 tomorrow 08:00-12:00 slots=2")
    await community.say(":as wang", "/signup S1", ":as li", "/signup S1", ":as lead", "/signup S1")
    assert await states(community, 1) == {"wang": "slot", "li": "slot", "lead": "waiting"}

    out = await community.say(":as wang", "/swap S1 @lead")
    assert "🔁 @wang 想把 S1 卡口（北门） 02-11 08:00–12:00 的名额换给 @lead" in out.text("g1chat")
    assert "[接班: /signup S1]" in out.text("g1chat")
    assert "@wang 想把 S1 卡口（北门） 02-11 08:00–12:00 换给你" in out.text("dm:lead")
    assert await states(community, 1) == {"wang": "slot", "li": "slot", "lead": "waiting"}

    # The person offered the slot accepts; their place on the waiting list goes.
    out = await community.say(":as lead", "/signup S1")
    assert "🔁 @lead 接替 @wang 值 S1 卡口（北门） 02-11 08:00–12:00（2/2）" in out.text("g1chat")
    assert "@lead 已接替你值 S1" in out.text("dm:wang")
    assert await states(community, 1) == {"lead": "slot", "li": "slot"}
    async with community.app.db.transaction() as db:
        offered = await db.scalar(select(models.SignUp.offered_to_id).where(models.SignUp.offered_to_id.is_not(None)))
    assert offered is None

    out = await community.say(":as wang", "/swap S1 @li")
    assert "你在 S1 没有名额，无法换班" in out.text("g1chat")
    out = await community.say(":as li", "/swap S1 @li", "/swap S1 @lead", "/swap S1 @zhang")
    replies = out.texts("g1chat")
    assert "不能把 S1 换给自己。" in replies
    assert "@lead 已经在 S1 上了。" in replies
    assert any("@zhang 不是网格 g1 的网格员" in r for r in replies)


async def test_swap_checks_the_rest_rules_of_the_person_taking_over(community):
    await posts(community)
    await community.say("/shift add 卡口 tomorrow 08:00-12:00", "/shift add 巡查 tomorrow 11:00-13:00")
    await community.say(":as wang", "/signup S1", ":as li", "/signup S2")
    out = await community.say(":as wang", "/swap S1 @li")
    assert ("不符合休息规定「同一人的值班时间不能重叠」：@li已有 S2 巡查 02-11 11:00–13:00，"
            "与 S1 卡口（北门） 02-11 08:00–12:00 时间重叠") in out.text("g1chat")
    assert "dm:li" not in out.chats()
    assert await states(community, 1) == {"wang": "slot"}


# --- rest rules -------------------------------------------------------------------------


async def test_rest_rules_refuse_overlap_and_too_many_hours_naming_the_shift(community):
    await posts(community)
    await community.say(
        "/shift add 卡口 tomorrow 06:00-12:00",   # S1, 6 h
        "/shift add 巡查 tomorrow 11:00-13:00",   # S2, overlaps S1
        "/shift add 巡查 tomorrow 14:00-19:00",   # S3, 6 + 5 = 11 h > 10
        "/shift add 巡查 tomorrow 20:00-02:00",   # S4, 4 h on the 11th, 2 h on the 12th
    )
    await community.say(":as wang", "/signup S1")
    out = await community.say("/signup S2")
    assert ("不符合休息规定「同一人的值班时间不能重叠」：你已有 S1 卡口（北门） 02-11 06:00–12:00，"
            "与 S2 巡查 02-11 11:00–13:00 时间重叠。") in out.text("g1chat")
    out = await community.say("/signup S3")
    assert ("不符合休息规定「每人每天值班不超过 10 小时」：你 2026-02-11 已有 S1 卡口（北门） "
            "02-11 06:00–12:00，再加上 S3 巡查 02-11 14:00–19:00（当天 5 小时）共 11 小时。"
            ) in out.text("g1chat")
    # Of a night shift only the hours before midnight count towards the 11th.
    out = await community.say("/signup S4")
    assert "@wang 报名了 S4" in out.text("g1chat")
    assert await states(community, 2) == {} and await states(community, 3) == {}

    out = await community.say(":as admin", ":in hq", "/set maxhours 12")
    assert "每日最长值班 12 小时" in out.text("hq")
    out = await community.say(":as wang", ":in g1chat", "/signup S3")
    assert "不符合休息规定「每人每天值班不超过 12 小时」" in out.text("g1chat")  # 6 + 4 + 5 = 15
    out = await community.say("/unsign S4", "/signup S3")
    assert "@wang 报名了 S3" in out.text("g1chat")
    # A shift longer than the day's maximum is refused to anyone, and says so.
    out = await community.say(":as lead", "/shift add 卡口 2026-02-14 06:00-19:00", ":as li", "/signup S5")
    assert ("不符合休息规定「每人每天值班不超过 12 小时」：S5 卡口（北门） 02-14 06:00–19:00 "
            "在 2026-02-14 就有 13 小时。") in out.text("g1chat")


# --- reminders, the start, hours --------------------------------------------------------


async def test_reminder_is_sent_once_before_the_start_across_restarts(community):
    await posts(community)
    await community.say("/shift add 卡口 today 11:00-13:00", "/shift add 巡查 today 12:00-13:00")
    await community.say(":as wang", "/signup S1", ":as li", "/signup S2")

    out = await community.say(":wait 55m")  # 09:55
    assert "dm:wang" not in out.chats()
    out = await community.say(":wait 10m")  # 10:05: an hour before S1
    assert out.chats().count("dm:wang") == 1
    assert "⏰ 值班提醒：S1 卡口（北门） 02-10 11:00–13:00 将在 1小时后开始" in out.text("dm:wang")
    assert (await shift_row(community, 1)).reminded_at is not None

    await community.restart()
    out = await community.say(":wait 50m")  # 10:55
    assert "dm:wang" not in out.chats() and "dm:li" not in out.chats()

    # Down from 10:55 to 11:20: S2's reminder (due at 11:00) goes out once when it is back.
    await community.stop()
    await community.start("2026-02-10T11:20")
    out = await community.say(":wait 10m")
    assert out.chats().count("dm:li") == 1 and "S2 巡查 02-10 12:00–13:00 将在" in out.text("dm:li")
    await community.restart()
    out = await community.say(":wait 20m")
    assert "dm:li" not in out.chats() and "dm:wang" not in out.chats()


async def test_reminder_lead_time_is_a_bounded_community_setting(community):
    out = await community.say(":as admin", ":in hq", "/set shiftremind 3h")
    assert "值班提前 180 分钟提醒" in out.text("hq")
    for bad in ("1m", "2d"):
        out = await community.say(f"/set shiftremind {bad}")
        assert "超出范围（5m–24h）" in out.text("hq")
    await posts(community)
    await community.say("/shift add 卡口 today 14:00-16:00", ":as wang", "/signup S1")
    out = await community.say(":wait 115m")  # 10:55
    assert "dm:wang" not in out.chats()
    out = await community.say(":wait 10m")  # 11:05, three hours before the start
    assert "S1 卡口（北门） 02-10 14:00–16:00 将在 3小时后开始" in out.text("dm:wang")


async def test_leaders_are_told_at_the_start_when_slots_are_still_empty(community):
    await posts(community)
    await community.say("/shift add 卡口 today 10:00-12:00 slots=3", "/shift add 巡查 today 10:00-11:00")
    await community.say(":as wang", "/signup S1", ":as li", "/signup S2")
    out = await community.say(":wait 65m")
    alerts = out.texts("dm:lead")
    assert alerts == ["⚠ S1 卡口（北门） 02-10 10:00–12:00 已开始，仍缺 2 人（1/3），在岗：@wang。"]
    assert "g1chat" not in out.chats()
    out = await community.say(":wait 1h")
    assert "dm:lead" not in out.chats()


async def test_hours_are_credited_after_the_end_and_not_for_a_no_show(community):
    await posts(community)
    await community.say("/shift add 卡口 today 10:00-12:00 slots=2")
    await community.say(":as wang", "/signup S1", ":as li", "/signup S1")

    out = await community.say(":as lead", "/noshow S1 @li")
    assert "S1 卡口（北门） 02-10 10:00–12:00 还没开始，不能记缺勤" in out.text("g1chat")
    await community.say(":wait 65m")  # 10:05: under way
    out = await community.say("/noshow S1 @li")
    group = out.text("g1chat")
    assert "S1 的到岗情况已记录" in group and "@li" not in group  # never named in the group
    assert "@lead 把你记为 S1 卡口（北门） 02-10 10:00–12:00 未到岗" in out.text("dm:li")
    out = await community.say("/noshow S1 @zhang", ":dm", "/noshow S1 @li")
    assert "@zhang 没有在 S1 的名额上" in out.text("g1chat")
    assert "@li 在 S1 已记为缺勤" in out.text("dm:lead")

    out = await community.say(":as wang", ":in g1chat", "/me")
    assert "累计值班：0 小时" in out.text("g1chat")
    assert (await shift_row(community, 1)).credited_at is None
    await community.say(":wait 2h")  # 12:05, the shift has ended
    assert (await shift_row(community, 1)).credited_at is not None
    out = await community.say("/me")
    assert "累计值班：2 小时" in out.text("g1chat")
    out = await community.say(":as li", "/me")
    assert "累计值班：0 小时" in out.text("g1chat")
    credited = (await shift_row(community, 1)).credited_at
    await community.restart()
    await community.say(":wait 1h")
    assert (await shift_row(community, 1)).credited_at == credited  # credited once


async def test_noshow_is_for_leaders_of_the_shifts_grid(community):
    await posts(community)
    await community.say("/shift add 卡口 today 10:00-12:00", ":as wang", "/signup S1", ":wait 2h")
    out = await community.say("/noshow S1 @wang")
    assert "/noshow 需要「网格长」或以上角色" in out.text("g1chat")
    assert await states(community, 1) == {"wang": "slot"}
    out = await community.say(":as lead", ":in g2chat", "/noshow S1 @wang")
    assert "请在你所在网格的群聊中使用" in out.text("g2chat")  # lead leads g1, not g2
    out = await community.say(":as admin", ":in hq", "/noshow S1 @wang")
    assert "S1 的到岗情况已记录" in out.text("hq")  # a secretary may, from the HQ chat
    assert await states(community, 1) == {"wang": "noshow"}


# --- the digest -------------------------------------------------------------------------


async def test_digest_lists_tomorrows_empty_slots_and_the_no_shows(tmp_path):
    bot = ConsoleBot(tmp_path, start="2026-02-10T19:00")
    await bot.start()
    try:
        await setup_community(bot)
        await posts(bot)
        await bot.say(
            "/shift add 卡口 today 19:30-19:50 slots=2",        # S1: wang, li (li absent)
            "/shift add 卡口 tomorrow 08:00-12:00 slots=3",    # S2: 2 of 3 empty
            "/shift add 巡查 tomorrow 08:00-12:00",            # S3: filled
            "/shift add 巡查 2026-02-12 08:00-12:00",          # S4: beyond 24 h
            ":as wang", "/signup S1", "/signup S2", ":as li", "/signup S1", "/signup S3",
            ":wait 35m", ":as lead", "/noshow S1 @li",
        )
        out = await bot.say(":clock 2026-02-10T20:00")
        [hq] = [t for t in out.texts("hq") if "每日汇总" in t]
        [g1] = [t for t in out.texts("g1chat") if "每日汇总" in t]
        [g2] = [t for t in out.texts("g2chat") if "每日汇总" in t]
        assert "值班：未来 24 小时 1 个班次缺人，共缺 2 人；上期缺勤 1 人次。" in g1
        assert "S2 卡口（北门） 02-11 08:00–12:00 · 1/3 ⚠缺 2 人 · @wang" in g1
        assert "S3" not in g1 and "S4" not in g1
        assert "缺勤：S1 卡口（北门） 02-10 19:30–19:50" in g1
        assert "@li" not in g1  # no names of absentees in the grid chat
        assert "缺勤：S1 卡口（北门） 02-10 19:30–19:50 @li" in hq
        assert "值班：未来 24 小时没有缺人的班次；上期无人缺勤。" in g2
    finally:
        await bot.stop()


# --- leaving, aliases, English ----------------------------------------------------------


async def test_leaving_the_grid_gives_back_future_signups(community):
    await join(community, "v1")
    await posts(community)
    await community.say("/shift add 卡口 tomorrow 08:00-12:00", "/shift add 巡查 tomorrow 14:00-16:00")
    await community.say(":as wang", "/signup S1", "/signup S2", ":as v1", "/signup S1", "/swap S1 @li")
    out = await community.say(":as wang", "/leave")
    assert "你已从候补递补上 S1" in out.text("dm:v1")
    assert await states(community, 1) == {"v1": "slot"}
    assert await states(community, 2) == {}


async def test_role_taken_away_gives_back_future_signups(community):
    await posts(community)
    await community.say("/shift add 卡口 tomorrow 08:00-12:00")
    await community.say(":as wang", "/signup S1", ":as li", "/signup S1")
    await community.say(":as lead", "/role @wang none")
    assert await states(community, 1) == {"li": "slot"}


async def test_chinese_aliases(community):
    out = await community.say(":as lead", ":in g1chat", "/岗位 add 测温 东门")
    assert "已添加值班岗位「测温」（东门）" in out.text("g1chat")
    out = await community.say("/排班 测温 今天 10:00-11:00 slots=1")
    assert "新值班 S1 测温（东门） 02-10 10:00–11:00" in out.text("g1chat")
    out = await community.say(":as wang", "/报名 s1", ":as li", "/报名 1")
    assert "@wang 报名了 S1" in out.text("g1chat") and "@li 已列入候补第 1 位" in out.text("g1chat")
    out = await community.say("/值班表 今天")
    assert "今天的值班（网格 g1）" in out.text("g1chat") and "S1 测温（东门）" in out.text("g1chat")
    out = await community.say(":as wang", "/换班 S1 @li")
    assert "换给 @li" in out.text("g1chat")
    out = await community.say(":as li", "/报名 S1", "/取消报名 S1")
    assert "@li 接替 @wang" in out.text("g1chat") and "@li 取消了 S1" in out.text("g1chat")
    await community.say(":as wang", "/报名 S1", ":wait 65m")
    out = await community.say(":as lead", "/缺勤 S1 @wang")
    assert "S1 的到岗情况已记录" in out.text("g1chat")


async def test_english_replies(community):
    await community.say(":as admin", ":in hq", "/set lang en")
    await posts(community)
    out = await community.say("/shift add 卡口 tomorrow 22:00-06:00 slots=1")
    assert "New shift S1 卡口 (北门) 02-11 22:00–next day 06:00, 1 slot." in out.text("g1chat")
    assert "[Sign up: /signup S1]" in out.text("g1chat")
    out = await community.say(":as wang", "/signup S1", ":as li", "/signup S1", "/shifts")
    assert "@li is number 1 on the waiting list" in out.text("g1chat")
    assert "S1 卡口 (北门) 02-11 22:00–next day 06:00 · 1/1 full · @wang · 1 waiting" in out.text("g1chat")
    # The shift clock's messages are in the community's language too.
    await community.say(":as lead", "/shift add 巡查 today 10:00-11:00", ":as li", "/signup S2")
    out = await community.say(":wait 5m")
    assert "⏰ Shift reminder: S2 巡查 02-10 10:00–11:00 starts in 55m." in out.text("dm:li")


@pytest.mark.parametrize("which, shown, hidden", [
    ("today", ["S1"], ["S2", "S3"]),
    ("tomorrow", ["S2"], ["S1", "S3"]),
    ("week", ["S1", "S2", "S3"], []),
])
async def test_shift_lists_by_day(community, which, shown, hidden):
    await posts(community)
    await community.say("/shift add 卡口 today 18:00-20:00", "/shift add 卡口 tomorrow 18:00-20:00",
                        "/shift add 卡口 2026-02-15 18:00-20:00")
    out = await community.say(":as wang", f"/shifts {which}")
    text = out.text("g1chat")
    assert all(f"{s} 卡口" in text for s in shown) and not any(f"{s} 卡口" in text for s in hidden)
    assert "0/1 ⚠缺 1 人" in text

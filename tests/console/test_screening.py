"""Screening rounds, visitor and vehicle logs and coverage, through the console transport."""

from __future__ import annotations

from tests.harness import parse_blocks

USAGE = "/screen <household> <ok|fever|away|outsider|refused>"


def group_output(bot) -> str:
    """Everything the bot said in group chats other than the HQ chat, since it started."""
    blocks = parse_blocks(bot.stdout.getvalue())
    return "\n".join(b.text for b in blocks if not b.chat.startswith("dm:") and b.chat != "hq")


async def test_coverage_rises_as_households_are_screened_and_resets_with_a_new_round(community):
    bot = community
    out = await bot.say(":as wang", ":in g1chat", "/screen 3-1-101 ok people=3")
    assert out.chats() == ["g1chat"]
    assert "3-1-101" in out.text() and "1/24" in out.text()
    out = await bot.say("/screen 3-1-102 ok")
    assert "2/24" in out.text()
    out = await bot.say("/screen 3-1-101 away")  # again: the latest counts, not twice
    assert "2/24" in out.text() and "再次" in out.text()

    out = await bot.say("/coverage")
    assert "第 1 轮排查：2/24 户（8%）" in out.text()
    assert "3栋：2/24" in out.text()
    assert "正常 1，外出不在家 1" in out.text()

    out = await bot.say(":as lead", "/round new")
    assert "不易撤回" in out.text() and "[确定: /round new confirm]" in out.text()
    out = await bot.say("/coverage")
    assert "第 1 轮排查：2/24 户（8%）" in out.text()  # nothing changed before confirming
    out = await bot.say("/round new confirm")
    assert "第 1 轮排查结束：已排查 2/24 户" in out.text()
    assert "第 2 轮" in out.text()
    out = await bot.say("/coverage")
    assert "第 2 轮排查：0/24 户（0%）" in out.text()

    out = await bot.say(":as wang", "/screen 3-1-101 ok")
    assert "第 2 轮排查：1/24" in out.text()
    out = await bot.say(":as admin", ":in hq", "/grid list")
    assert "第 2 轮排查 1/24" in out.text()


async def test_coverage_lists_lagging_buildings_first_and_the_key_persons(community):
    bot = community
    await bot.say(":as lead", ":in g1chat", "/household add 5-1-101 5-1-102")
    await bot.say(":as wang", "/screen 5-1-101 ok", "/screen 5-1-102 refused", "/screen 3-1-101 ok")
    await bot.say("/watch add 3-1-201 张三 home-observation")
    out = await bot.say("/coverage")
    text = out.text("g1chat")
    assert "3/26" in text
    assert text.index("3栋：1/24") < text.index("5栋：2/2（100%） ✓")
    assert "重点人员：0/1" in text

    out = await bot.say(":as admin", ":in hq", "/coverage")  # the HQ chat: every grid
    assert "网格 g1" in out.text() and "网格 g2" in out.text()


async def test_a_fever_screening_alerts_leaders_and_secretary_by_direct_message(community):
    bot = community
    await bot.say(":as admin", ":in g2chat", "/role @zhou leader")  # another grid's leader
    out = await bot.say(":as wang", ":in g1chat", "/screen 3-1-102 fever people=2 temp=38.4 张三发烧")
    # dm:wang: a temperature typed in the group, so wang is asked to use a direct chat.
    assert sorted(out.chats()) == ["dm:admin", "dm:lead", "dm:wang", "g1chat"]
    assert "私聊" in out.text("dm:wang") and "38.4" not in out.text("dm:wang")
    for dm in ("dm:admin", "dm:lead"):
        assert "3-1-102" in out.text(dm) and "38.4" in out.text(dm) and "@wang" in out.text(dm)
    assert "3-1-102" in out.text("g1chat") and "发热" in out.text("g1chat")
    assert "38.4" not in out.text("g1chat")

    out = await bot.say("/screen 3-1-201 ok temp=37.6")  # a high temperature is a fever too
    assert sorted(out.chats()) == ["dm:admin", "dm:lead", "g1chat"]  # wang was asked today
    assert "已按发热记录" in out.text("g1chat")  # never "ok" in the record and "fever" alerted
    assert "37.6" in out.text("dm:lead")

    out = await bot.say("/screen 3-1-202 ok temp=36.6")
    assert out.chats() == ["g1chat"]

    out = await bot.say(":as lead", "/screen 3-1-301 fever")  # who reports is not told again
    assert sorted(out.chats()) == ["dm:admin", "dm:lead", "g1chat"]  # dm:lead: use a DM
    assert "私聊" in out.text("dm:lead") and "3-1-301" not in out.text("dm:lead")

    assert "38.4" not in group_output(bot) and "37.6" not in group_output(bot)
    assert "张三" not in group_output(bot)


async def test_bad_screenings_are_explained_and_nothing_is_stored(community):
    bot = community
    await bot.say(":as admin", ":in g2chat", "/household add 7-1-101")
    out = await bot.say(":as wang", ":in g1chat", "/screen 3-1-999 ok")
    assert "3-1-999" in out.text() and "相近的户号" in out.text() and USAGE in out.text()
    out = await bot.say("/screen 3-1-101 ok temp=45")
    assert "34–43" in out.text() and USAGE in out.text()
    out = await bot.say("/screen 3-1-101 sick")
    assert "sick" not in out.text() and "无效" in out.text() and USAGE in out.text()
    out = await bot.say("/screen 3-1-101")
    assert USAGE in out.text()
    out = await bot.say("/screen 7-1-101 ok")
    assert "属于网格 g2" in out.text()
    out = await bot.say("/coverage")
    assert "0/24" in out.text()


async def test_screening_needs_a_member_in_a_grid_chat_and_rounds_a_leader(community):
    bot = community
    out = await bot.say(":as zhao", ":in g1chat", "/screen 3-1-101 ok")
    assert "需要先报到成为网格员" in out.text()
    out = await bot.say(":as wang", "/round new")
    assert "需要「网格长」" in out.text()
    out = await bot.say(":in hq", "/screen 3-1-101 ok")
    assert "请在你所在网格的群聊中使用" in out.text()
    out = await bot.say(":as lead", ":in g1chat", "/round")
    assert "/round new" in out.text()


async def test_chinese_aliases(community):
    bot = community
    out = await bot.say(":as wang", ":in g1chat", "/排查 3栋1单元101室 发热")
    assert "3-1-101 已排查：发热" in out.text("g1chat")
    out = await bot.say("/覆盖率")
    assert "1/24" in out.text()


async def test_visitor_and_vehicle_logs_count_the_day(community):
    bot = community
    out = await bot.say(":as wang", ":in g1chat", "/visitor 3-1-101 from=武汉 探亲")
    assert "3-1-101" in out.text() and "武汉" in out.text() and "1 人次" in out.text()
    assert "探亲" not in out.text()  # notes stay in the record
    out = await bot.say("/visitor 3-1-102")
    assert "2 人次" in out.text()
    out = await bot.say("/visitor 3-1-999 from=武汉")
    assert "3-1-999" in out.text() and "/visitor <household>" in out.text()

    out = await bot.say("/vehicle 蒙A12345 3-1-101 送货")
    assert "蒙A12345" in out.text() and "3-1-101" in out.text() and "1 辆次" in out.text()
    out = await bot.say("/vehicle 蒙b 12347 送货上门")  # no household: the rest is the note
    assert "蒙B12347" in out.text() and "2 辆次" in out.text()
    out = await bot.say("/vehicle 蒙C12345 3-1-999 送货")  # a mistyped household is no note
    assert "3-1-999" in out.text() and "相近的户号" in out.text()
    assert "/vehicle <plate> [household] [note…]" in out.text()
    out = await bot.say("/vehicle 3-1-101")
    assert "<plate>" in out.text()

    out = await bot.say(":wait 24h", "/vehicle 蒙A12345")
    assert "1 辆次" in out.text()
    out = await bot.say(":as zhao", "/visitor 3-1-101")
    assert "需要先报到成为网格员" in out.text()


async def test_digest_sections_show_coverage_fevers_visitors_and_vehicles(community):
    bot = community
    await bot.say(":as admin", ":in g2chat", "/household add 7-1-101 7-1-102",
                  "/screen 7-1-101 ok", "/screen 7-1-102 ok")
    await bot.say(":as wang", ":in g1chat", "/screen 3-1-101 ok", "/screen 3-1-102 fever temp=38.4",
                  "/visitor 3-1-101 from=武汉", "/vehicle 蒙A12345 3-1-101")
    out = await bot.say(":as admin", ":in hq", "/digest")
    hq = out.text("hq")
    assert "排查（第 1 轮）：2/24 户（8%）" in hq
    assert "未排查完的楼栋：3栋 2/24" in hq
    assert "3-1-102（38.4°C）" in hq  # the HQ chat may see temperatures
    assert "外来人员 1 人次：3-1-101（来自武汉）" in hq
    assert "车辆 1 辆次：蒙A12345（3-1-101）" in hq
    assert "排查（第 1 轮）：2/2 户（100%）" in hq and "本轮住户已全部排查" in hq
    assert hq.index("▌g1") < hq.index("▌g2")  # a fever makes g1 more urgent

    out = await bot.say(":as lead", ":in g1chat", "/digest")
    assert "新发热 1 户：3-1-102" in out.text("g1chat")
    assert "38.4" not in group_output(bot)


async def test_replies_in_english(community):
    bot = community
    await bot.say(":as admin", ":in hq", "/set lang en")
    out = await bot.say(":as wang", ":in g1chat", "/screen 3-1-101 fever temp=38.4")
    assert "3-1-101 screened: fever" in out.text("g1chat")
    assert "Round 1: 1/24" in out.text("g1chat")
    assert "temperature 38.4 °C" in out.text("dm:lead")
    out = await bot.say("/coverage", "/visitor 3-1-101 from=Wuhan", "/vehicle 京A12345 3-1-101")
    assert "building 3: 1/24" in out.text()
    assert "Visitors in this grid today: 1" in out.text()
    assert "Vehicles in this grid today: 1" in out.text()
    out = await bot.say(":as lead", "/round new confirm", "/digest")
    assert "round 1 closed: 1/24" in out.text()
    assert "Screening (round 2): 0/24" in out.text()
    assert "38.4" not in group_output(bot)

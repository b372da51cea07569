"""Supplies through the console transport: levels over days, the one low alert, recovery,
days of cover, names in two languages, units, priority requests, /supplies all and the
digest's supplies section. The clock starts at 2026-02-10 09:00 (Asia/Shanghai).
"""

from __future__ import annotations

from sqlalchemy import select

from storage import models


def replies(out, chat: str = "g1chat") -> list[str]:
    """What was said in `chat`, without the daily digest."""
    return [t for t in out.texts(chat) if "每日汇总" not in t and "daily digest" not in t]


async def rows(bot, model, *where):
    async with bot.app.db.transaction() as db:
        return list((await db.scalars(select(model).where(*where).order_by(model.id))).all())


async def item(bot, name: str, grid: str = "g1") -> models.SupplyItem:
    async with bot.app.db.transaction() as db:
        return await db.scalar(
            select(models.SupplyItem)
            .join(models.Grid, models.Grid.id == models.SupplyItem.grid_id)
            .where(models.SupplyItem.name == name, models.Grid.code == grid)
        )


async def levels(bot, name: str, grid: str = "g1") -> list[float]:
    row = await item(bot, name, grid)
    reports = await rows(bot, models.SupplyReport, models.SupplyReport.item_id == row.id)
    return [r.level for r in reports]


def alerts(out, user: str = "lead") -> list[str]:
    return [t for t in out.texts(f"dm:{user}") if "物资预警" in t]


async def test_levels_over_several_days_and_days_of_cover(community):
    out = await community.say(":as wang", ":in g1chat", "/supply 口罩 1000 个")
    assert "已记录 g1 口罩：1000 个" in out.text("g1chat")
    assert "可用" not in out.text("g1chat")  # one report: no rate of use yet

    out = await community.say(":wait 1d", "/supply masks 800")
    # 200 used in one day: 800 last four days.
    assert "已记录 g1 口罩：800 个" in out.text("g1chat") and "约可用 4 天" in out.text("g1chat")

    out = await community.say(":wait 1d", "/supply 口罩 600个", "/supplies")
    [reply, listing] = replies(out)
    assert "约可用 3 天" in reply
    assert "口罩：600 个 · 约可用 3 天 · @wang 02-12 09:00 上报" in listing

    # A delivery starts a new run: no rate until it has gone down over some hours.
    out = await community.say(":wait 2h", "/supply 口罩 2000")
    assert "可用" not in out.text("g1chat")
    # 300 used in 22 h (11:00 → 09:00): 1700 / (300 / (22/24)) = 5.19 days.
    out = await community.say(":wait 22h", "/supply 口罩 1700", "/supplies")
    assert "约可用 5.2 天" in replies(out)[0]
    assert "口罩：1700 个 · 约可用 5.2 天 · @wang 02-13 09:00 上报" in replies(out)[1]

    assert await levels(community, "masks") == [1000, 800, 600, 2000, 1700]


async def test_exactly_one_alert_on_crossing_the_minimum_and_again_after_recovery(community):
    out = await community.say(":as lead", ":in g1chat", "/supply min 口罩 500",
                              ":as wang", "/supply 口罩 600")
    assert "最低库存设为 500 个" in out.text("g1chat") and alerts(out) == []

    out = await community.say("/supply 口罩 450")
    [alert] = alerts(out)
    assert "g1 一网格的口罩只剩 450 个，低于最低库存 500 个" in alert and "@wang" in alert
    assert "已低于最低库存，已通知网格长" in out.text("g1chat")
    assert out.chats().count("dm:lead") == 1 and "dm:wang" not in out.chats()
    assert (await item(community, "masks")).low_since is not None

    # Still low, report after report and day after day: no second alert.
    out = await community.say("/supply 口罩 400", ":wait 1d", "/supply masks 300",
                              ":wait 1d", "/supply 口罩 200")
    assert alerts(out) == [] and "dm:lead" not in out.chats()
    assert "\n".join(replies(out)).count("仍低于最低库存") == 3

    # A delivery: back at the minimum, the alert re-armed.
    out = await community.say("/supply 口罩 500")
    assert "已回到最低库存以上" in out.text("g1chat") and alerts(out) == []
    assert (await item(community, "masks")).low_since is None

    out = await community.say(":wait 1d", "/supply 口罩 350", "/supply 口罩 300")
    assert len(alerts(out)) == 1 and "只剩 350 个" in alerts(out)[0]


async def test_raising_the_minimum_above_the_level_alerts_the_other_leaders_once(community):
    await community.say(":as admin", "/role @lead2 leader", ":as lead2 Lead Two", "/join",
                        ":as wang", "/supply 消毒液 20 升")
    out = await community.say(":as lead", "/supply min 消毒液 30", "/supply min 消毒液 25")
    assert len(alerts(out, "lead2")) == 1 and alerts(out, "lead") == []
    assert "当前已低于最低库存，已通知其他网格长" in out.texts("g1chat")[0]
    assert "当前仍低于最低库存" in out.texts("g1chat")[1]
    out = await community.say("/supply min 消毒液 0")
    assert "已取消消毒液的最低库存" in out.text("g1chat")
    assert (await item(community, "disinfectant")).low_since is None


async def test_chinese_and_english_names_of_one_item_are_one_record(community):
    out = await community.say(
        ":as wang", ":in g1chat",
        "/supply 口罩 500 个", "/supply masks 500", "/supply MASKS 450", "/supply Ｎ９５ 400",
        "/物资 医用口罩 350",
    )
    assert out.text("g1chat").count("已记录 g1 口罩") == 5
    assert len(await rows(community, models.SupplyItem)) == 1
    assert await levels(community, "masks") == [500, 500, 450, 400, 350]

    # Grain under any of its names; the English community sees English names and units.
    await community.say("/supply 米 100斤", "/supply 面 40", "/supply rice 30 kg")
    assert await levels(community, "grain") == [50, 40, 30]
    out = await community.say(":as admin", ":in hq", "/set lang en", ":as wang", ":in g1chat",
                              "/supply 口罩 300", "/supplies")
    assert "Recorded g1 masks: 300 pcs" in out.texts("g1chat")[0]
    assert "grain: 30 kg" in out.texts("g1chat")[1] and "masks: 300 pcs" in out.texts("g1chat")[1]


async def test_units_are_converted_and_contradicting_units_refused(community):
    out = await community.say(
        ":as wang", ":in g1chat",
        "/supply 粮 1.5吨", "/supply 粮食 300斤", "/supply 面 500 g", "/supply 酒精 500ml",
        "/supply 油 2 升", "/supply 手套 30 双", "/supply 口罩 ５００", "/supply 口罩 2万",
    )
    replies = out.texts("g1chat")
    assert "粮食：1500 公斤（1.5 吨）" in replies[0]
    assert "粮食：150 公斤（300 斤）" in replies[1]
    assert "粮食：0.5 公斤（500 克）" in replies[2]
    assert "酒精：0.5 升（500 毫升）" in replies[3]
    assert "食用油：2 升" in replies[4]
    assert "手套：30 副" in replies[5]  # counting words stand for one another
    assert "口罩：500 个" in replies[6] and "口罩：20000 个" in replies[7]

    out = await community.say("/supply masks 3 kg", "/supply 口罩 2箱", "/supply 酒精 1 斤")
    wrong_kg, wrong_box, wrong_jin = out.texts("g1chat")
    assert "口罩以「个」计量，「公斤」无法换算成个" in wrong_kg
    assert "/supply <item> <qty> [unit]" in wrong_kg
    assert "口罩以「个」计量，「箱」无法换算" in wrong_box
    assert "酒精以「升」计量，「斤」无法换算" in wrong_jin
    assert await levels(community, "masks") == [500, 20000]  # nothing stored when refused

    out = await community.say(":as admin", ":in hq", "/set lang en", ":as wang", ":in g1chat",
                              "/supply masks 3 kg")
    assert "masks is counted in pcs, and kg does not convert to pcs" in out.text("g1chat")


async def test_bad_quantities_and_names_get_the_usage_line(community):
    cases = {  # what was typed is never repeated in a group chat
        "/supply 口罩 -5": "数量不能是负数",
        "/supply 口罩 abc": "「…」不是有效的数量",
        "/supply 口罩 五百": "「…」不是有效的数量",
        "/supply 口罩 500xyz": "「…」不是认得的单位",
        "/supply 口罩 500 xyz": "「…」不是认得的单位",
        "/supply 500 口罩": "「…」不是物资名称",
        "/supply @li 5": "「…」不是物资名称",
        "/supply 口罩500": "物资和数量之间请空一格",
        "/supply 口罩": "缺少 <qty>",
        "/supply 口罩 500个 kg": "多余的内容",
    }
    await community.say(":as wang", ":in g1chat")
    for line, problem in cases.items():
        out = await community.say(line)
        [reply] = out.texts("g1chat")
        assert problem in reply, line
        assert "用法：\n/supply <item> <qty> [unit]" in reply, line
        assert not any(w in reply for w in ("abc", "五百", "xyz", "@li", "口罩500")), line
    assert await rows(community, models.SupplyReport) == []
    out = await community.say(":as zhang Resident", "/supply 口罩 500")
    assert "/supply 需要先报到成为网格员" in out.text("g1chat")


async def test_unknown_item_is_other_until_a_leader_gives_it_a_category_and_aliases(community):
    out = await community.say(":as wang", ":in g1chat", "/supply 体温枪 5")
    assert "新物资「体温枪」按「其他」类记录" in out.text("g1chat")
    assert (await item(community, "体温枪")).category == "other"

    out = await community.say("/supply item 体温枪 category=medicine")
    assert "需要「网格长」或以上角色" in out.text("g1chat")
    out = await community.say(
        ":as lead", "/supply item 体温枪 category=药品 alias=测温枪,thermometer"
    )
    assert "体温枪：药品，单位 个" in out.text("g1chat")
    assert "测温枪、thermometer" in out.text("g1chat")

    out = await community.say(":as wang", "/supply 测温枪 4", "/supply thermometer 3")
    assert out.text("g1chat").count("已记录 g1 体温枪") == 2
    assert await levels(community, "体温枪") == [5, 4, 3]

    out = await community.say(":as lead", "/supply item 体温枪 alias=口罩")
    assert "这个别名已是 口罩 的名称或别名" in out.text("g1chat")
    out = await community.say("/supply item 体温枪 unit=kg")
    assert "已有按「个」上报的记录" in out.text("g1chat")
    out = await community.say("/supply item 汽油")
    assert "本网格还没有这种物资" in out.text("g1chat")

    # A unit of the same kind converts the history.
    await community.say("/supply 牛肉 20 kg", "/supply item 肉 unit=斤")
    assert await levels(community, "meat") == [40]


async def test_supplies_lists_low_items_first_then_the_front_line(community):
    await community.say(
        ":as wang", ":in g1chat", "/supply 体温枪 5", "/supply 蔬菜 80 kg", "/supply 药 12",
        "/supply 消毒液 20", "/supply 口罩 500", "/supply 鸡蛋 30",
        ":as lead", "/supply min 鸡蛋 40",
    )
    out = await community.say(":as li", "/库存")
    lines = out.text("g1chat").splitlines()
    assert lines[0] == "网格 g1 物资库存（6 项，1 项低于最低库存）："
    names = [line.split("：")[0] for line in lines[1:]]
    assert names == ["⚠ 鸡蛋", "口罩", "消毒液", "蔬菜", "药品", "体温枪"]
    assert "⚠ 鸡蛋：30 公斤（最低 40） · @wang 02-10 09:00 上报" in lines[1]


async def test_priority_requests_opened_and_met_with_a_message_to_the_asker(community):
    out = await community.say(":as wang", ":in g1chat", "/need 防护服 50 套 北门卡口急用")
    group = out.text("g1chat")
    assert "优先需求 N1：防护服 50 套，由 @wang 提出" in group and "北门卡口急用" in group
    assert "[已满足: /need done N1]" in group  # the button, as a hint on the console
    assert "g1 一网格 优先需求 N1" in out.text("hq")

    out = await community.say("/需求 口罩 200个", "/need 手套 -1")
    assert "优先需求 N2：口罩 200 个" in out.texts("g1chat")[0]
    assert "数量不能是负数" in out.texts("g1chat")[1]

    out = await community.say("/supplies")
    assert "待满足的优先需求（2）" in out.text("g1chat") and "N1 防护服 50 套" in out.text("g1chat")

    out = await community.say("/need done N1")
    assert "需要「网格长」或以上角色" in out.text("g1chat")
    out = await community.say(":as admin", ":in g2chat", "/role @lead2 leader", ":as lead2",
                              "/join", "/need done N1")
    assert "N1 是网格 g1 的需求" in out.text("g2chat")

    # The secretary marks it met from the HQ chat: the grid chat and the asker are told.
    out = await community.say(":as admin", ":in hq", "/need done N1 街道已调拨")
    assert "优先需求 N1（g1 防护服 50 套）已满足，@admin 确认" in out.text("hq")
    assert "N1" in out.text("g1chat") and "已满足" in out.text("g1chat")
    [told] = out.texts("dm:wang")
    assert "你提出的优先需求 N1（g1 防护服 50 套）已满足" in told and "街道已调拨" in told

    out = await community.say(
        ":as lead", ":in g1chat", "/need done n1", "/need done N9", "/need done 2"
    )
    already, unknown, met = out.texts("g1chat")
    assert "N1 已经标记为满足（@admin" in already
    assert "没有 N9" in unknown and "/need done <N> [note…]" in unknown
    assert "N2" in met and "已满足" in met
    assert len(out.texts("dm:wang")) == 1  # told of N2 only
    needs = await rows(community, models.SupplyNeed)
    assert [(n.number, n.closed_at is not None) for n in needs] == [(1, True), (2, True)]


async def test_supplies_all_for_the_secretary_in_the_hq_chat_only(community):
    await community.say(
        ":as wang", ":in g1chat", "/supply 口罩 300", "/supply 消毒液 20",
        ":as lead", "/supply min 口罩 500",
        ":as admin", "/role @zhao leader", ":in g2chat", ":as zhao Zhao", "/join",
        "/supply masks 1200", "/supply 蔬菜 50", "/need 酒精 10 升",
    )
    out = await community.say(":as admin", ":in hq", "/supplies all")
    text = out.text("hq")
    assert "阳光社区 各网格物资（g1 · g2）" in text
    lines = text.splitlines()
    assert lines[1] == "⚠ 口罩：g1 300 个 ⚠低于500 · g2 1200 个"
    assert "消毒液：g1 20 升 · g2 —" in lines and "蔬菜：g1 — · g2 50 公斤" in lines
    assert "g2 N1 酒精 10 升 · @zhao 提出" in text
    out = await community.say("/库存")  # the HQ chat has no grid: the whole community
    assert "阳光社区 各网格物资" in out.text("hq")

    out = await community.say(":as wang", ":in g1chat", "/supplies all")
    assert "/supplies 需要「社区书记」或以上角色" in out.text("g1chat")
    out = await community.say(":as admin", "/supplies all")
    assert "/supplies 请在社区指挥部群中使用" in out.text("g1chat")


async def test_digest_lists_low_items_with_cover_and_open_requests_grid_by_grid(community):
    await community.say(
        ":as lead", ":in g1chat", "/supply min 口罩 500",
        ":as wang", "/supply 口罩 1000", "/supply 消毒液 30",
    )
    out = await community.say(":clock 2026-02-10T20:00")
    [g1] = [t for t in out.texts("g1chat") if "每日汇总" in t]
    assert "物资：没有低于最低库存的物资，也没有待满足的优先需求。" in g1

    # Overnight 600 used in a day: 400 left, below 500, for about 0.7 days.
    out = await community.say(":clock 2026-02-11T09:00", "/supply 口罩 400",
                              "/need 口罩 1000 个 明天的消耗", ":clock 2026-02-11T20:00")
    [hq] = [t for t in out.texts("hq") if "每日汇总" in t]
    [g1] = [t for t in out.texts("g1chat") if "每日汇总" in t]
    [g2] = [t for t in out.texts("g2chat") if "每日汇总" in t]
    for text in (hq, g1):
        assert "物资：1 项低于最低库存，1 条优先需求待满足" in text
        assert "⚠ 口罩：400 个（最低 500） · 约可用 0.7 天" in text
        assert "N1 口罩 1000 个 · @wang 提出 · 明天的消耗 · 已等 11小时" in text
        assert "消毒液" not in text
    assert "物资：没有低于最低库存的物资" in g2 and "N1" not in g2

    # Back above the minimum and the request met: gone from the next digest.
    out = await community.say(":clock 2026-02-12T09:00", "/supply 口罩 1400",
                              ":as lead", "/need done N1", ":clock 2026-02-12T20:00")
    [g1] = [t for t in out.texts("g1chat") if "每日汇总" in t]
    assert "物资：没有低于最低库存的物资，也没有待满足的优先需求。" in g1


async def test_in_english(community):
    await community.say(":as admin", ":in hq", "/set lang en", ":as lead", ":in g1chat",
                        "/supply min gloves 100", ":as wang", "/supply 手套 120 副")
    out = await community.say("/supply gloves 80 pairs")
    assert "Recorded g1 gloves: 80 pairs, minimum 100 pairs." in out.text("g1chat")
    assert "Now below the minimum; the grid leaders have been told." in out.text("g1chat")
    [alert] = out.texts("dm:lead")
    assert "g1 一网格 has only 80 pairs of gloves left, below the minimum of 100 pairs" in alert

    out = await community.say("/need suits 20 for the north gate")
    assert "priority request N1: protective suits 20 sets, asked by @wang" in out.text("g1chat")
    assert "Note: for the north gate" in out.text("g1chat")
    assert "[Met: /need done N1]" in out.text("g1chat")
    out = await community.say(":as admin", ":in hq", "/digest")
    assert "Supplies: 1 below minimum, 1 priority request open" in out.text("hq")
    assert "⚠ gloves: 80 pairs (min 100)" in out.text("hq")
    assert "N1 protective suits 20 sets · asked by @wang · for the north gate" in out.text("hq")

    out = await community.say("/need done N1", "/supplies all")
    assert ("Priority request N1 (g1 protective suits 20 sets) is met, confirmed by @admin"
            in out.text("hq"))
    assert "Your priority request N1" in out.text("dm:wang")
    assert "⚠ gloves: g1 80 pairs ⚠below 100 · g2 —" in out.text("hq")
    assert "No open priority requests." in out.text("hq")


async def test_the_asker_cancels_a_request_and_it_leaves_supplies_and_the_digest(community):
    await community.say(":as wang", ":in g1chat", "/need 防护服 50 套 北门卡口急用",
                        "/need 口罩 200 个")
    out = await community.say(":as admin", ":in hq", "/digest")
    assert "N1 防护服 50 套" in out.text("hq") and "N2 口罩 200 个" in out.text("hq")

    out = await community.say(":wait 5m", ":as wang", ":in g1chat", "/need cancel N1")
    [reply] = out.texts("g1chat")
    assert "优先需求 N1（g1 防护服 50 套，@wang 提出）已取消，@wang 操作" in reply
    assert out.chats() == ["g1chat"]  # the asker's own: no one else to tell
    [n1, n2] = await rows(community, models.SupplyNeed)
    assert (n1.state, n1.closed_at is not None, n1.met_by_id) == ("cancelled", True, None)
    assert (n2.state, n2.closed_at) == ("pending", None)

    out = await community.say("/supplies")
    assert "N1" not in out.text("g1chat") and "N2 口罩 200 个" in out.text("g1chat")
    out = await community.say(":as admin", ":in hq", "/digest", "/supplies all")
    [digest, listing] = out.texts("hq")
    assert "1 条优先需求待满足" in digest and "N1" not in digest and "N2" in digest
    assert "N1" not in listing and "N2" in listing

    # Closed is closed: neither cancelled again nor marked met.
    out = await community.say(":as wang", ":in g1chat", "/need cancel 1",
                              ":as lead", "/need done N1")
    again, met = out.texts("g1chat")
    assert "N1 已于 02-10 09:05 取消，无需再处理" in again
    assert "N1 已于 02-10 09:05 取消" in met
    # A met request cannot be cancelled.
    out = await community.say("/need done N2", ":as wang", "/need cancel N2")
    assert "N2 已经标记为满足（@lead" in out.texts("g1chat")[-1]
    assert [n.state for n in await rows(community, models.SupplyNeed)] == ["cancelled", "met"]


async def test_cancel_in_chinese_by_a_leader_or_the_secretary_tells_the_asker(community):
    await community.say(":as wang", ":in g1chat", "/need 防护服 50", "/need 手套 20",
                        "/need 酒精 5")
    out = await community.say(":as lead", "/需求 取消 N1")
    assert "N1" in out.text("g1chat") and "已取消，@lead 操作" in out.text("g1chat")
    [told] = out.texts("dm:wang")
    assert "你提出的优先需求 N1（g1 防护服 50 套）已被 @lead 取消" in told

    # The secretary, from the HQ chat: the grid's chat is told too.
    out = await community.say(":as admin", ":in hq", "/need 撤销 n2")
    assert "N2" in out.text("hq") and "已取消，@admin 操作" in out.text("hq")
    assert "N2" in out.text("g1chat") and "已取消" in out.text("g1chat")
    assert "已被 @admin 取消" in out.text("dm:wang")
    assert [n.state for n in await rows(community, models.SupplyNeed)] == [
        "cancelled", "cancelled", "pending"]


async def test_others_may_not_cancel_and_bad_ids_get_the_usage_line(community):
    await community.say(":as wang", ":in g1chat", "/need 防护服 50")
    out = await community.say(":as li", "/need cancel N1")
    assert "/need cancel 需要「网格长」或以上角色" in out.text("g1chat")
    out = await community.say(":as zhang Zhang", "/need cancel N1")  # not joined
    assert "/need cancel 需要先报到成为网格员" in out.text("g1chat")
    out = await community.say(":as admin", ":in g2chat", "/role @lead2 leader", ":as lead2",
                              "/join", "/need cancel N1")
    assert "N1 是网格 g1 的需求，只有该网格的网格长或社区书记（或提出人）可以取消" in (
        out.text("g2chat"))
    out = await community.say(":as wang", ":in g1chat", "/need cancel N9", "/need cancel",
                              "/need cancel 口罩")
    unknown, missing, bad = out.texts("g1chat")
    assert "没有 N9" in unknown and "/need cancel <N>" in unknown
    assert "/need cancel <N>" in missing and "/need cancel <N>" in bad
    assert "口罩" not in bad  # what was typed is not repeated in a group
    [n1] = await rows(community, models.SupplyNeed)
    assert n1.state == "pending" and n1.closed_at is None
    # Nothing was created by the words either (`取消` is not taken as an item).
    assert [i.name for i in await rows(community, models.SupplyItem)] == ["protective-suits"]


async def test_a_cancel_is_in_the_history_and_can_be_undone(community):
    await community.say(":as wang", ":in g1chat", "/need 防护服 50", ":wait 11m")
    out = await community.say("/need cancel N1", "/history N1")
    trail = out.texts("g1chat")[-1]
    assert "/need · 新建 → 待满足" in trail and "/need cancel · 待满足 → 已取消" in trail

    out = await community.say(":wait 1m", "/undo")
    assert "N1 撤回：恢复为待满足" in out.text("g1chat")
    [n1] = await rows(community, models.SupplyNeed)
    assert (n1.state, n1.closed_at) == ("pending", None)
    out = await community.say("/supplies")
    assert "N1 防护服 50 套" in out.text("g1chat")
    out = await community.say(":as lead", "/need done N1", "/history N1")
    assert "/need done · 待满足 → 已满足" in out.texts("g1chat")[-1]


async def test_cancel_in_english(community):
    await community.say(":as admin", ":in hq", "/set lang en", ":as wang", ":in g1chat",
                        "/need suits 20")
    out = await community.say(":as lead", "/need cancel N1", "/need cancel N1")
    cancelled, again = out.texts("g1chat")
    assert ("Priority request N1 (g1 protective suits 20 sets, asked by @wang) is cancelled, "
            "by @lead") in cancelled
    assert "N1 was cancelled at 02-10 09:00" in again
    assert "Your priority request N1" in out.text("dm:wang") and "was cancelled by @lead" in (
        out.text("dm:wang"))

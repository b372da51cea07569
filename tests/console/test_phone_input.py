"""Phone-typed input end to end: what issue 18 found mangled is read the same everywhere."""

from __future__ import annotations

from sqlalchemy import select

from storage import models


async def rows(bot, model) -> list:
    async with bot.app.db.transaction() as db:
        return list((await db.scalars(select(model).order_by(model.id))).all())


async def test_chinese_and_full_width_options_reach_the_record(community):
    bot = community
    out = await bot.say(":as wang", ":in g1chat", "／ｓｃｒｅｅｎ　３－１－１０１　fever 体温＝３８，５ 人数＝３ 咳嗽")
    assert "3-1-101" in out.text("g1chat")
    assert "体温 38.5°C" in out.text("dm:lead")  # the alert has the temperature
    assert "38.5" not in out.text("g1chat")
    screening = (await rows(bot, models.Screening))[-1]
    assert (screening.temperature, screening.people, screening.note) == (38.5, 3, "咳嗽")

    await bot.say("/screen 3-1-102 fever 三十八度五")
    await bot.say("/screen 3-1-201 ok temp=37.5度")
    await bot.say("/screen 3-1-202 ok temp=36.8℃")
    temps = [s.temperature for s in await rows(bot, models.Screening)]
    assert temps == [38.5, None, 37.5, 36.8]  # a bare `三十八度五` is no option: it is a note


async def test_errand_options_in_chinese_and_full_width_are_not_text(community):
    bot = community
    out = await bot.say(":as zhang Zhang", ":in g1chat", "/errand 买菜 for＝3-1-101 by=明天 18:00")
    assert "新代办 E1：买菜" in out.text() and "3-1-101" in out.text()
    assert "02-11 18:00" in out.text()
    out = await bot.say("/errand 买药 为=３-１-１０２ 期限=今晚8点")
    assert "新代办 E2：买药" in out.text() and "02-10 20:00" in out.text()
    out = await bot.say("/errand 送水 by=tomorrow")
    assert "新代办 E3：送水" in out.text() and "02-11 23:59" in out.text()
    out = await bot.say("/errand 远期 by=2099-01-01T00:00")
    assert "2099-01-01 00:00" in out.text()
    errands = await rows(bot, models.Errand)
    assert [e.text for e in errands] == ["买菜", "买药", "送水", "远期"]

    out = await bot.say("/errand 买菜 价格=5元")  # an unknown key is refused, not kept as text
    assert "不认识的选项「…」，可用：for=、by=" in out.text()  # typed text not repeated
    out = await bot.say(":as wang", "/claim Ｅ1", "/done E1 people=3")
    assert "@wang 认领了 E1" in out.text()
    assert "没有「people=」这样的选项" in out.text()
    assert len(await rows(bot, models.Errand)) == 4


async def test_vehicle_plates_are_validated_and_tidied(community):
    bot = community
    out = await bot.say(":as wang", ":in g1chat", "/vehicle 京a 12345 3-1-101")
    assert "京A12345" in out.text() and "3-1-101" in out.text()
    out = await bot.say("/vehicle 😷")
    assert "车牌「…」无效：应为省份简称+字母" in out.text()
    out = await bot.say("/vehicle 粤bd12345")
    assert "粤BD12345" in out.text()
    assert [v.plate for v in await rows(bot, models.Vehicle)] == ["京A12345", "粤BD12345"]


async def test_key_person_until_in_the_forms_people_type(community):
    bot = community
    out = await bot.say(":as wang", ":in g1chat", "/watch add 3-1-101 张三 home-observation until=02-15")
    assert "K1" in out.text()
    await bot.say("/watch add 3-1-102 李四 home-observation 直到=2026/02/20")
    await bot.say("/watch add 3-1-201 王五 home-observation until=后天")
    until = [k.until.isoformat() for k in await rows(bot, models.KeyPerson)]
    assert until == ["2026-02-15", "2026-02-20", "2026-02-12"]


async def test_settings_are_bounded_and_risky_changes_are_confirmed(community):
    bot = community
    out = await bot.say(":as admin", ":in hq", "/set followup 99999d")
    assert "时长「…」无效" in out.text() and "最长十年" in out.text()
    out = await bot.say("/set followup 30d")
    assert "随访时限应在 1小时–7天 之间" in out.text()
    out = await bot.say("/set claim 1m")
    assert "认领时限应在 10分钟–3天 之间" in out.text()
    out = await bot.say("/set maxhours 99")
    assert "每日最长值班应在 1–24 之间" in out.text()

    out = await bot.say("/set retention 30d")  # shorter: records would be deleted
    assert "缩短为 30 天" in out.text() and "/set retention 30d confirm" in out.text()
    out = await bot.say("/set followup 3d")  # 24h → 3d: more than twice as wide
    assert "两倍以上" in out.text()
    community_row = (await rows(bot, models.Community))[0]
    assert (community_row.retention_days, community_row.followup_minutes) == (90, 24 * 60)

    out = await bot.say("/set retention 30d confirm", "/set followup 3d 确认", "/set claim 4h")
    community_row = (await rows(bot, models.Community))[0]
    assert community_row.retention_days == 30
    assert community_row.followup_minutes == 3 * 24 * 60
    assert community_row.claim_minutes == 4 * 60  # 3h → 4h needs no confirmation
    out = await bot.say("/set retention 60d")  # longer: no question
    assert "已更新" in out.text()

"""/praise: a commendation recorded, posted in the person's grid chat, told to them by direct
message and listed in the day's digest; bad input and refusals."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import aliased

from storage import models


async def praises(bot) -> list[tuple[str, str, str, str]]:
    """(praised, grid, by, reason) of every stored praise, oldest first."""
    by = aliased(models.Person)
    async with bot.app.db.transaction() as db:
        rows = await db.execute(
            select(models.Person.external_id, models.Grid.code, by.external_id, models.Praise.reason)
            .join(models.Praise, models.Praise.person_id == models.Person.id)
            .join(models.Grid, models.Grid.id == models.Praise.grid_id)
            .join(by, by.id == models.Praise.by_id)
            .order_by(models.Praise.id)
        )
        return [tuple(row) for row in rows.all()]


async def test_a_leader_praises_a_member_in_the_grid_chat_and_the_member_is_told(community):
    out = await community.say(":as lead", ":in g1chat", "/praise @wang 连续三天凌晨守北门卡口")
    assert out.texts("g1chat") == ["🌟 表扬 @wang（g1 一网格）\n连续三天凌晨守北门卡口\n—— @lead"]
    [told] = out.texts("dm:wang")
    assert "@lead 表扬了你" in told and "连续三天凌晨守北门卡口" in told
    assert "g2chat" not in out.chats() and "hq" not in out.chats()
    assert await praises(community) == [("wang", "g1", "lead", "连续三天凌晨守北门卡口")]


async def test_the_secretary_praises_from_hq_and_it_is_posted_in_the_persons_grid_chat(community):
    out = await community.say(":as admin", ":in hq", "/praise @li 帮独居老人代购药品")
    assert out.texts("g1chat") == ["🌟 表扬 @li（g1 一网格）\n帮独居老人代购药品\n—— @admin"]
    assert "帮独居老人代购药品" in out.text("dm:li")
    [confirmation] = out.texts("hq")
    assert "已表扬 @li（g1 一网格）" in confirmation and "已发到网格群" in confirmation
    assert "g2chat" not in out.chats()
    assert await praises(community) == [("li", "g1", "admin", "帮独居老人代购药品")]


async def test_a_leader_may_praise_from_a_direct_chat(community):
    out = await community.say(":as lead", ":dm", "/praise @wang 主动顶班")
    assert out.texts("g1chat") == ["🌟 表扬 @wang（g1 一网格）\n主动顶班\n—— @lead"]
    assert "已表扬 @wang" in out.text("dm:lead")
    assert "主动顶班" in out.text("dm:wang")


async def test_praise_of_someone_who_is_not_a_member_is_refused(community):
    await community.say(":as zhao Zhao", ":in g2chat", "/join")
    for target in ("@nobody", "@zhao"):  # never joined; a member of another grid
        out = await community.say(":as lead", ":in g1chat", f"/praise {target} 表现很好")
        [reply] = out.texts("g1chat")
        assert f"{target} 不是 g1 一网格 的成员，不能表扬" in reply
        assert out.chats() == ["g1chat"]
    out = await community.say(":as admin", ":in hq", "/praise @nobody 表现很好")
    assert "@nobody 不是本社区任何网格的成员" in out.text("hq")
    # A secretary holds no grid membership: not a grid member either.
    out = await community.say("/role @sec secretary", "/praise @sec 辛苦了")
    assert "@sec 不是本社区任何网格的成员" in out.texts("hq")[-1]
    assert await praises(community) == []


async def test_praise_without_a_reason_shows_the_usage(community):
    for typed in ("/praise @wang", "/praise @wang   ", "/praise"):
        out = await community.say(":as lead", ":in g1chat", typed)
        [reply] = out.texts("g1chat")
        assert "用法：\n/praise @user <reason…>" in reply
        assert out.chats() == ["g1chat"]
    out = await community.say("/praise wang 很好")
    assert "用法：\n/praise @user <reason…>" in out.text("g1chat")
    assert await praises(community) == []


async def test_members_cannot_praise_and_nobody_praises_themselves(community):
    out = await community.say(":as wang", ":in g1chat", "/praise @li 很好")
    assert out.texts() == ["/praise 需要「网格长」或以上角色。"]
    out = await community.say(":as lead", "/praise @lead 我很好")
    assert out.texts() == ["不能表扬自己。"]
    assert await praises(community) == []


async def test_praise_in_english(community):
    await community.say(":as admin", ":in hq", "/set lang en")
    out = await community.say(":as lead", ":in g1chat", "/praise @wang Guarded the north gate")
    assert out.texts("g1chat") == ["🌟 Praise for @wang (g1 一网格)\nGuarded the north gate\n— @lead"]
    assert "@lead praised you" in out.text("dm:wang")


async def test_the_days_praises_are_in_the_digest_of_their_grid(community):
    await community.say(
        ":as lead", ":in g1chat", "/praise @wang 连续三天守卡口", "/praise @li 帮老人买药",
    )
    out = await community.say(":clock 2026-02-10T20:00")
    [g1] = [t for t in out.texts("g1chat") if "每日汇总" in t]
    [g2] = [t for t in out.texts("g2chat") if "每日汇总" in t]
    [hq] = [t for t in out.texts("hq") if "每日汇总" in t]
    assert "表扬：本期 2 次\n🌟 @wang：连续三天守卡口\n🌟 @li：帮老人买药" in g1
    assert "表扬：本期没有新的表扬。" in g2 and "连续三天守卡口" not in g2
    assert "🌟 @wang：连续三天守卡口" in hq
    # The next day's digest lists only that day's praises (a restart moves the clock without
    # running a day of jobs; the digest due then goes out at start).
    out = await community.restart("2026-02-11T20:00")
    [g1] = [t for t in out.texts("g1chat") if "每日汇总" in t]
    assert "表扬：本期没有新的表扬。" in g1

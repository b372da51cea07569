"""Errands through the console transport: post, claim, complete, release, cancel, list; the
claim window's reminder and automatic release; the digest section; bad input and refusals."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from bot.context import JobContext
from bot.registry import REGISTRY
from storage import models


async def errand_row(bot, number: int) -> models.Errand:
    async with bot.app.db.transaction() as db:
        return await db.scalar(select(models.Errand).where(models.Errand.number == number))


async def person_id(bot, user: str) -> int:
    async with bot.app.db.transaction() as db:
        return await db.scalar(select(models.Person.id).where(models.Person.external_id == user))


async def post_errand(bot, text: str = "/errand 买菜和鸡蛋", user: str = "zhang") -> None:
    await bot.say(f":as {user} Zhang San", ":in g1chat", text)


async def test_full_life_cycle_of_an_errand_posted_by_a_resident(community):
    out = await community.say(
        ":as zhang Zhang San", ":in g1chat", "/errand 买菜和鸡蛋 for=3-1-101 by=18:00"
    )
    posted = out.text("g1chat")
    assert "新代办 E1：买菜和鸡蛋" in posted and "3-1-101" in posted and "02-10 18:00" in posted
    assert "[认领: /claim E1]" in posted  # the claim button, degraded to a hint on the console

    out = await community.say(":as wang", "/claim E1")
    assert "@wang 认领了 E1" in out.text("g1chat") and "3小时" in out.text("g1chat")
    assert "E1「买菜和鸡蛋」已由 @wang 认领" in out.text("dm:zhang")

    out = await community.say(":as li", "/claim E1")
    assert out.chats() == ["g1chat"]
    assert "E1 已由 @wang 认领" in out.text("g1chat")

    out = await community.say(":as wang", "/errands mine")
    assert "E1 @wang 认领中 · 买菜和鸡蛋（3-1-101） · 期限 02-10 18:00" in out.text("g1chat")

    out = await community.say("/done E1 放在门口了")
    assert "E1 已完成" in out.text("g1chat") and "放在门口了" in out.text("g1chat")
    assert "E1「买菜和鸡蛋」已由 @wang 完成" in out.text("dm:zhang")

    out = await community.say("/errands")
    assert "共 0 件" in out.text("g1chat")
    out = await community.say("/errands all")
    assert "E1 已完成" in out.text("g1chat")

    errand = await errand_row(community, 1)
    assert errand.state == "done" and errand.done_note == "放在门口了"
    assert errand.claimed_by_id == await person_id(community, "wang")
    async with community.app.db.transaction() as db:
        claims = (await db.scalars(
            select(models.AuditEntry).where(models.AuditEntry.command == "claim")
        )).all()
    # Only the winning claim wrote; its bulk UPDATE reached the audit log through ctx.record.
    assert len(claims) == 1 and claims[0].refs == ["E1"]
    assert claims[0].changes[-1]["after"]["state"] == "claimed"


async def test_group_shows_the_household_and_never_the_poster(community):
    out = await community.say(
        ":as zhang Zhang San", ":in g1chat", "/errand 隔离户买菜 for=3-2-602",
        ":as wang", "/claim E1", "/done E1", "/errands all",
    )
    group = out.text("g1chat")
    assert "3-2-602" in group
    assert "zhang" not in group.lower() and "Zhang San" not in group
    assert "@wang" in group


async def test_claim_button_is_stored_for_transports_that_show_buttons(community):
    await post_errand(community)
    async with community.app.db.transaction() as db:
        message = await db.scalar(select(models.OutboxMessage).where(models.OutboxMessage.ref == "E1"))
        posted = await db.scalar(select(models.PostedMessage).where(models.PostedMessage.ref == "E1"))
    assert message.buttons == [{"label": "认领", "command": "/claim E1", "emoji": "✋"}]
    assert posted is not None and posted.buttons == message.buttons

    out = await community.say(":as admin", ":in hq", "/set lang en", ":as zhang", ":in g1chat",
                              "/errand buy milk")
    assert "New errand E2: buy milk" in out.text("g1chat")
    assert "[Claim: /claim E2]" in out.text("g1chat")


async def test_chinese_aliases(community):
    out = await community.say(":as zhang", ":in g1chat", "/代办 取药 for=3-1-102")
    assert "新代办 E1：取药" in out.text("g1chat")
    out = await community.say(":as li", "/认领 1")
    assert "@li 认领了 E1" in out.text("g1chat")
    out = await community.say("/代办列表 我的")
    assert "E1 @li 认领中" in out.text("g1chat")
    out = await community.say("/完成 e1 已送到")
    assert "E1 已完成" in out.text("g1chat")
    assert (await errand_row(community, 1)).state == "done"


async def test_release_by_claimer_or_leader_reopens_with_the_claim_button(community):
    await post_errand(community)
    out = await community.say(":as wang", "/claim E1", "/release E1")
    assert "E1 重新开放（已由 @wang 退回）" in out.text("g1chat")
    assert "[认领: /claim E1]" in out.text("g1chat")
    assert (await errand_row(community, 1)).state == "open"

    out = await community.say(":as li", "/claim E1", ":as wang", "/release E1")
    assert "E1 由 @li 认领，只有认领人或网格长可以退回它" in out.text("g1chat")
    assert (await errand_row(community, 1)).claimed_by_id == await person_id(community, "li")

    out = await community.say(":as lead", "/release E1")
    assert "E1 重新开放（已由 @lead 退回）" in out.text("g1chat")
    assert "@lead 把你认领的代办 E1「买菜和鸡蛋」退回为待认领" in out.text("dm:li")
    errand = await errand_row(community, 1)
    assert (errand.state, errand.claimed_by_id, errand.claimed_at) == ("open", None, None)

    out = await community.say("/release E1")
    assert "E1 还没有人认领" in out.text("g1chat")


async def test_cancel_by_poster_or_leader_only(community):
    await post_errand(community, "/errand 买米")
    await post_errand(community, "/errand 买油", user="zhao")
    out = await community.say(":as wang", "/cancel E1")
    assert "只有 E1 的发布人或网格长可以取消它" in out.text("g1chat")
    out = await community.say(":as zhao", "/cancel E1")
    assert "只有 E1 的发布人或网格长可以取消它" in out.text("g1chat")
    assert (await errand_row(community, 1)).state == "open"

    out = await community.say(":as zhang", "/cancel E1")
    assert "E1 已由 @zhang 取消" in out.text("g1chat")
    assert (await errand_row(community, 1)).state == "cancelled"

    out = await community.say(":as li", "/claim E2", ":as lead", "/cancel E2")
    assert "E2 已由 @lead 取消" in out.text("g1chat")
    assert "E2「买油」已被取消" in out.text("dm:li")

    out = await community.say(":as wang", "/claim E1", "/cancel E1")
    assert out.texts("g1chat") == ["E1 已经取消，不能再认领、完成、退回或取消。"] * 2


async def test_bad_input_gets_clear_replies_and_changes_nothing(community):
    await post_errand(community)
    out = await community.say(":as wang", "/claim E9")
    assert "没有 E9" in out.text("g1chat") and "/claim <E>" in out.text("g1chat")
    out = await community.say("/claim abc")
    assert "不是有效编号" in out.text("g1chat")
    out = await community.say("/claim")
    assert "/claim <E>" in out.text("g1chat")
    out = await community.say("/done E1")
    assert "E1 还没有人认领" in out.text("g1chat")
    out = await community.say("/errand")
    assert "/errand <text…> [for=<household>] [by=<time>]" in out.text("g1chat")
    out = await community.say("/errand 买药 for=9-9-909")
    assert "9-9-909" in out.text("g1chat") and "/errand <text…>" in out.text("g1chat")
    out = await community.say("/errand 买药 by=2026-02-09T18:00")
    assert "已经过去了" in out.text("g1chat")
    out = await community.say("/errand 买药 by=soon")
    assert "/errand <text…>" in out.text("g1chat")
    out = await community.say("/errands some")
    assert "/errands [open|mine|all]" in out.text("g1chat")

    out = await community.say("/claim E1", ":as li", "/done E1 抢着完成")
    assert "E1 由 @wang 认领，只有认领人或网格长可以完成它" in out.text("g1chat")
    out = await community.say(":as wang", "/claim E1")
    assert "你已经认领了 E1" in out.text("g1chat")
    out = await community.say(":as lead", "/done E1")
    assert "E1 已完成（认领人 @wang，由 @lead 确认）" in out.text("g1chat")
    out = await community.say(":as li", "/claim E1")
    assert "E1 已经完成" in out.text("g1chat")

    errand = await errand_row(community, 1)
    assert errand.state == "done" and errand.done_note == ""
    assert errand.claimed_by_id == await person_id(community, "wang")
    async with community.app.db.transaction() as db:
        assert await db.scalar(select(func.count()).select_from(models.Errand)) == 1


async def test_refusals_by_role_and_place(community):
    await post_errand(community)
    out = await community.say("/claim E1")  # zhang is a resident
    assert "/claim 需要先报到成为网格员：请在本群发送 /join" in out.text("g1chat")
    out = await community.say("/done E1")
    assert "需要先报到成为网格员" in out.text("g1chat")
    out = await community.say(":in hq", "/errand 买菜")
    assert "请在你所在网格的群聊中使用" in out.text("hq")
    out = await community.say(":as wang", ":dm", "/claim E1")
    assert "请在你所在网格的群聊中使用" in out.text("dm:wang")
    # An errand of grid g2 is handled in g2's chat, not by g1's members.
    out = await community.say(":as zhao", ":in g2chat", "/errand 买奶粉",
                              ":as lead", ":in g1chat", "/claim E2", "/cancel E2")
    assert out.texts("g1chat") == ["E2 属于网格 g2，请在该网格的群里处理。"] * 2
    assert (await errand_row(community, 1)).state == "open"
    assert (await errand_row(community, 2)).state == "open"


async def test_claim_window_reminds_once_then_reopens_and_announces_again(community):
    await post_errand(community, "/errand 买菜 for=3-1-101")
    await community.say(":as wang", "/claim E1")  # 09:00; the window is 3 h
    out = await community.say(":wait 2h55m")
    assert out == []
    out = await community.say(":wait 5m")  # 12:00
    assert out.chats() == ["dm:wang"]
    assert "E1「买菜」已超过认领时限（3小时）" in out.text() and "02-10 15:00" in out.text()

    await community.restart()  # the reminder mark survives a restart: no second reminder
    out = await community.say(":wait 2h55m")
    assert out == []
    out = await community.say(":wait 5m")  # 15:00, twice the window
    assert out.chats() == ["g1chat", "dm:wang"]
    assert "E1 重新开放（认领后超时未完成）：买菜" in out.text("g1chat")
    assert "3-1-101" in out.text("g1chat") and "[认领: /claim E1]" in out.text("g1chat")
    assert "已退回为待认领" in out.text("dm:wang")
    errand = await errand_row(community, 1)
    assert (errand.state, errand.claimed_by_id, errand.reminded_at) == ("open", None, None)

    out = await community.say(":wait 3h")  # 18:00, before the day's digest
    assert out == []
    out = await community.say(":as li", "/claim E1", ":wait 3h")  # a new claim, a new reminder
    assert out.texts("dm:li")[-1].startswith("提醒：你认领的代办 E1")


async def test_claim_window_follows_the_setting_and_spares_finished_errands(community):
    await post_errand(community, "/errand 送药")
    await post_errand(community, "/errand 买菜")
    await community.say(":as admin", ":in hq", "/set claim 1h", ":in g1chat",
                        ":as wang", "/claim E1", "/claim E2", "/done E2")
    out = await community.say(":wait 1h")
    assert out.chats() == ["dm:wang"] and "E1「送药」" in out.text()
    out = await community.say(":wait 1h")
    assert out.chats() == ["g1chat", "dm:wang"] and "E1 重新开放" in out.text("g1chat")
    assert (await errand_row(community, 2)).state == "done"


async def test_overdue_errands_are_marked_in_lists(community):
    await post_errand(community, "/errand 买菜 by=2h")
    await post_errand(community, "/errand 买米 by=2026-02-11T09:00")
    out = await community.say("/errands")
    assert "⚠已逾期" not in out.text("g1chat")
    out = await community.say(":wait 3h", "/errands open")
    lines = out.text("g1chat").splitlines()
    assert any(line.startswith("E1 待认领 · 买菜") and "⚠已逾期" in line for line in lines)
    assert any(line.startswith("E2 待认领 · 买米") and "⚠已逾期" not in line for line in lines)
    assert "已发布 3小时" in out.text("g1chat")


async def render_digest(bot, grid_code: str, lang: str = "zh") -> tuple[dict, str]:
    section = next(s for s in REGISTRY.digest_sections if s.name == "errands")
    async with bot.app.db.transaction() as db:
        community = await db.scalar(select(models.Community))
        community.lang = lang
        grid = await db.scalar(select(models.Grid).where(models.Grid.code == grid_code))
        jc = JobContext(app=bot.app, db=db, now=bot.app.clock.now(), community=community)
        values = await section.function(jc, grid, jc.now - timedelta(days=1), jc.now)
        text = jc.render(section.template, **values)
        await db.rollback()
    return values, text


async def test_digest_section_lists_unfinished_errands_with_age_owner_and_overdue(community):
    await post_errand(community, "/errand 买菜 for=3-1-101 by=1h")
    await post_errand(community, "/errand 买米")
    await post_errand(community, "/errand 取快递")
    await community.say(":as wang", "/claim E2", "/claim E3", "/done E3", ":wait 2h")

    values, text = await render_digest(community, "g1")
    assert values["total"] == 2 and values["overdue"] == 1 and values["completed"] == 1
    assert isinstance(values["urgency"], int) and values["urgency"] == 4
    assert text.startswith("代办：未完成 2 件，其中逾期 1 件；本期完成 1 件")
    assert "E1 待认领 · 买菜（3-1-101） · 期限 02-10 10:00 ⚠已逾期 · 已发布 2小时" in text
    assert "E2 @wang 认领中 · 买米" in text
    assert "E3" not in text

    values, text = await render_digest(community, "g2")
    assert values["urgency"] == 0 and text == "代办：没有未完成的代办。"

    _, text = await render_digest(community, "g1", lang="en")
    assert text.startswith("Errands: 2 not done, 1 overdue; 1 done in this period")
    assert "E2 claimed by @wang · 买米" in text


async def test_an_automatic_release_is_in_the_audit_log(community):
    from sqlalchemy import select

    from storage import models

    await community.say(":as li", ":in g1chat", "/errand 买菜", ":as wang", "/claim E1", ":wait 7h")
    async with community.app.db.transaction() as db:
        entries = (await db.scalars(
            select(models.AuditEntry).where(models.AuditEntry.command.like("job:%"))
        )).all()
    released = [c for e in entries for c in e.changes
                if c["table"] == "errands" and (c["after"] or {}).get("state") == "open"]
    assert len(released) == 1 and released[0]["before"]["state"] == "claimed"

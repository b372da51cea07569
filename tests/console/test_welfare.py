"""/welfare: front-line workers' scores after duty, asked once after a shift, reported only
as aggregates per grid; shared with the leader only when the worker chooses.

Shift data is written through the ORM into the bot's database inside the tests (DutyPost,
Shift with `credited_at` set as the shifts module does once hours are credited, SignUp
rows), while the shift commands are built elsewhere.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from storage import models
from storage.queries import next_number
from tests.harness import Output

TZ = ZoneInfo("Asia/Shanghai")
NOTES = ("腰疼得厉害", "连续三个夜班", "家里老人没人照顾")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


async def checks(bot) -> list[tuple[str, int, str, str | None]]:
    """(person, score, note, grid) of every stored welfare check."""
    async with bot.app.db.transaction() as db:
        rows = await db.execute(
            select(models.Person.external_id, models.WelfareCheck.score, models.WelfareCheck.note,
                   models.Grid.code)
            .join(models.WelfareCheck, models.WelfareCheck.person_id == models.Person.id)
            .outerjoin(models.Grid, models.Grid.id == models.WelfareCheck.grid_id)
            .order_by(models.WelfareCheck.id)
        )
        return [tuple(row) for row in rows.all()]


async def add_shift(bot, start: str, end: str, people: dict[str, str], *, credited: bool = True) -> int:
    """A g1 shift with sign-ups {user: state}; hours credited at its end unless told not to."""
    async with bot.app.db.transaction() as db:
        grid = await db.scalar(select(models.Grid).where(models.Grid.code == "g1"))
        persons = {p.external_id: p for p in await db.scalars(select(models.Person))}
        post = await db.scalar(select(models.DutyPost).where(models.DutyPost.grid_id == grid.id))
        if post is None:
            post = models.DutyPost(community_id=grid.community_id, grid_id=grid.id, name="卡口 北门")
            db.add(post)
            await db.flush()
        shift = models.Shift(
            community_id=grid.community_id, number=await next_number(db, grid.community_id, "S"),
            grid_id=grid.id, post_id=post.id, starts_at=at(start), ends_at=at(end), slots=2,
            created_by_id=persons["lead"].id, credited_at=at(end) if credited else None,
            # Seeded as past its reminder and start: the shifts module has nothing to say.
            reminded_at=at(start), started_alerted_at=at(start),
        )
        db.add(shift)
        await db.flush()
        db.add_all(models.SignUp(shift_id=shift.id, person_id=persons[user].id, state=state,
                                 at=at(start)) for user, state in people.items())
        return shift.id


async def credit(bot, shift_id: int, when: str) -> None:
    async with bot.app.db.transaction() as db:
        (await db.get(models.Shift, shift_id)).credited_at = at(when)


async def asks(bot) -> list[tuple[int, str]]:
    async with bot.app.db.transaction() as db:
        rows = await db.execute(
            select(models.WelfareAsk.shift_id, models.Person.external_id)
            .join(models.Person, models.Person.id == models.WelfareAsk.person_id)
            .order_by(models.WelfareAsk.id)
        )
        return [tuple(row) for row in rows.all()]


# --- the question after duty ------------------------------------------------------------


async def test_each_worker_is_asked_once_after_a_shift_even_across_a_restart(community):
    await community.say(":as zhou Zhou", ":in g1chat", "/join", ":as admin")
    done = await add_shift(community, "2026-02-10T04:00", "2026-02-10T08:00",
                           {"wang": "slot", "li": "slot", "lead": "waiting", "zhou": "noshow"})
    running = await add_shift(community, "2026-02-10T08:30", "2026-02-10T12:30",
                              {"lead": "slot"}, credited=False)
    await add_shift(community, "2026-02-08T04:00", "2026-02-08T08:00", {"li": "slot"})  # long ago

    out = await community.say(":wait 10m")
    assert sorted(out.chats()) == ["dm:li", "dm:wang"]  # not the waiting list, not a no-show
    question = out.text("dm:wang")
    assert "S1（卡口 北门，02-10 04:00–08:00）已结束" in question
    for n in range(1, 6):  # one button per score (hints on the console)
        assert f"[{n}: /welfare {n}]" in question

    out = await community.say(":wait 1h")
    assert out.texts() == []
    await community.restart()
    out = await community.say(":wait 1h")
    assert out.texts() == []

    # When the shifts module credits the next shift, its worker is asked: once.
    await credit(community, running, "2026-02-10T12:30")
    out = await community.say(":wait 10m", ":wait 30m")
    assert out.chats() == ["dm:lead"] and "S2" in out.text("dm:lead")
    await community.restart()
    out = await community.say(":wait 30m")
    assert out.texts() == []
    assert sorted(await asks(community)) == [(done, "li"), (done, "wang"), (running, "lead")]


async def test_one_question_for_shifts_ending_together_and_none_after_an_answer(community):
    await add_shift(community, "2026-02-10T00:00", "2026-02-10T04:00", {"wang": "slot"})
    await add_shift(community, "2026-02-10T04:00", "2026-02-10T08:00", {"wang": "slot"})
    await community.say(":as li", ":dm", "/welfare 4")  # li told us before being asked
    await add_shift(community, "2026-02-10T05:00", "2026-02-10T08:30", {"li": "slot"})
    out = await community.say(":wait 10m")
    assert out.chats() == ["dm:wang"]
    assert sorted(await asks(community)) == [(1, "wang"), (2, "wang"), (3, "li")]


async def test_pressing_a_score_button_answers_in_the_direct_chat(community):
    await add_shift(community, "2026-02-10T04:00", "2026-02-10T08:00", {"wang": "slot"})
    await community.say(":wait 10m")
    out = await community.say(":as wang", ":dm", "/welfare 4")  # what the ④ button sends
    [reply] = out.texts("dm:wang")
    assert "收到：4 分" in reply and "/welfare share" not in reply
    assert await checks(community) == [("wang", 4, "", "g1")]


# --- answering ---------------------------------------------------------------------------


async def test_welfare_in_a_group_points_to_a_direct_chat_and_stores_nothing(community):
    for chat in ("g1chat", "hq"):
        out = await community.say(":as wang", f":in {chat}", "/welfare 2 腰疼得厉害")
        assert out.texts() == ["/welfare 请在与我的私聊中使用。"]
        assert "腰疼" not in out.text()
    out = await community.say(":in g1chat", "/welfare share")
    assert out.texts() == ["/welfare share 请在与我的私聊中使用。"]
    assert await checks(community) == []


async def test_scores_outside_one_to_five_are_refused_chinese_numerals_accepted(community):
    await community.say(":as wang", ":dm")
    for word in ("0", "6", "3.5", "六", "很累", "-1"):
        out = await community.say(f"/welfare {word} 备注")
        [reply] = out.texts("dm:wang")
        assert f"「{word}」不是有效的分数" in reply and "用法：\n/welfare <1-5> [note…]" in reply
    out = await community.say("/welfare")
    assert "用法：" in out.text("dm:wang")
    assert await checks(community) == []
    await community.say("/welfare 五", "/welfare ３ 还行", "/welfare 2分")
    assert await checks(community) == [("wang", 5, "", "g1"), ("wang", 3, "还行", "g1"),
                                       ("wang", 2, "", "g1")]


async def test_residents_cannot_answer(community):
    out = await community.say(":as passer", ":dm", "/welfare 3")
    assert out.texts() == ["/welfare 需要「网格员」或以上角色。"]
    assert await checks(community) == []


# --- sharing with the leader -------------------------------------------------------------


async def test_the_leader_sees_a_score_only_when_the_worker_shares_it(community):
    out = await community.say(":as wang", ":dm", "/welfare 2 连续三个夜班")
    [reply] = out.texts("dm:wang")
    assert "[告诉网格长: /welfare share]" in reply  # offered after a low score
    assert out.chats() == ["dm:wang"]  # nobody else hears of it

    out = await community.say("/welfare share")
    [told] = out.texts("dm:lead")
    assert "@wang 愿意让你知道" in told and "2 分" in told
    assert "连续三个夜班" not in told  # the note stays with the worker
    assert "已告诉网格长 @lead" in out.text("dm:wang")
    assert sorted(out.chats()) == ["dm:lead", "dm:wang"]

    out = await community.say("/welfare share")
    assert out.chats() == ["dm:wang"] and "已经告诉过网格长" in out.text("dm:wang")


async def test_share_with_nothing_to_share_and_a_fine_score_offers_no_button(community):
    out = await community.say(":as li", ":dm", "/welfare share")
    assert out.chats() == ["dm:li"] and "还没有你的状态记录" in out.text("dm:li")
    out = await community.say("/welfare 5")
    assert "/welfare share" not in out.text("dm:li")


# --- aggregates only ---------------------------------------------------------------------


async def answer(bot, user: str, chat: str, *lines: str) -> Output:
    return await bot.say(f":as {user} {user.title()}", f":in {chat}", "/join", ":dm", *lines)


async def test_scores_reach_the_digest_only_as_aggregates_strained_grids_first(community):
    run = Output()  # every message of the run
    run += await community.say(":as admin", ":in hq", "/grid add g3 三网格",
                               ":in g3chat", "/grid link g3")
    # g1 (calm): wang's latest answer counts once; li and lead.
    run += await community.say(":as wang", ":dm", "/welfare 1 腰疼得厉害", "/welfare 5")
    run += await community.say(":as li", ":dm", "/welfare 3")
    run += await community.say(":as lead", ":dm", "/welfare 4")
    # g2: two answers only, too few to show figures.
    run += await answer(community, "zhao", "g2chat", "/welfare 1 家里老人没人照顾")
    run += await answer(community, "qian", "g2chat", "/welfare 5")
    # g3 (strained: 2 of 3 at 1–2).
    run += await answer(community, "sun", "g3chat", "/welfare 1 连续三个夜班")
    run += await answer(community, "zhou", "g3chat", "/welfare 2")
    run += await answer(community, "wu", "g3chat", "/welfare 4")
    assert len(await checks(community)) == 9

    run += await community.say(":as admin", ":in hq", "/digest")
    run += await community.say(":clock 2026-02-10T20:00")
    daily = [t for t in run.texts("hq") if "每日汇总" in t]
    assert len(daily) == 1
    for digest in (run.texts("hq")[-2], daily[0]):  # /digest and the daily digest
        section = digest[digest.index("关怀"):]
        assert section.splitlines() == [
            "关怀：值班后状态（只有汇总，看不到个人）",
            "⚠ g3 三网格：3 人反馈，平均 2.3 分，1–2 分 2 人（超过三分之一，请考虑安排轮休、谈心）",
            "g1 一网格：3 人反馈，平均 4.0 分，1–2 分 0 人",
            "g2 二网格：2 人反馈（不足 3 人，不显示分数，以免认出个人）",
        ]
    # Grid chats get no welfare figures at all.
    for chat in ("g1chat", "g2chat", "g3chat"):
        part = [t for t in run.texts(chat) if "每日汇总" in t]
        assert part and "关怀" not in part[0]

    # The scan: no group or HQ message of the whole run shows a note, names an answerer
    # next to a welfare figure, or holds a single score.
    groups = [b.text for b in run if not b.chat.startswith("dm:")]
    assert groups
    for text in groups:
        for note in NOTES:
            assert note not in text
        if "关怀" in text or "/welfare" in text:
            welfare = text[text.index("关怀"):] if "关怀" in text else text
            for user in ("wang", "li", "lead", "zhao", "qian", "sun", "zhou", "wu"):
                assert f"@{user}" not in welfare
            assert not re.search(r"(?<![–\d.])[1-5] ?分", welfare), welfare


async def test_the_welfare_section_says_so_when_nobody_answered(community):
    out = await community.say(":as admin", ":in hq", "/digest")
    assert "关怀：本期没有值班后状态反馈。" in out.text("hq")
    await community.say("/set lang en")
    out = await community.say("/digest")
    assert "Welfare after duty: no answers this period." in out.text("hq")


async def test_welfare_in_english(community):
    await community.say(":as admin", ":in hq", "/set lang en")
    await add_shift(community, "2026-02-10T04:00", "2026-02-10T08:00", {"wang": "slot"})
    out = await community.say(":wait 10m")
    assert "S1 (卡口 北门, 02-10 04:00–08:00) is over" in out.text("dm:wang")
    out = await community.say(":as wang", ":dm", "/welfare 1 back pain")
    assert "Noted: 1." in out.text("dm:wang") and "[Tell my leader: /welfare share]" in out.text("dm:wang")
    await community.say(":as li", ":dm", "/welfare 2", ":as lead", ":dm", "/welfare 5")
    out = await community.say(":as admin", ":in hq", "/digest")
    digest = out.text("hq")
    section = digest[digest.index("Welfare after duty"):].splitlines()
    assert section == [
        "Welfare after duty (totals only, no individuals)",
        "⚠ g1 一网格: 3 answered, average 2.7, 2 at 1–2 (more than a third: consider rest and a talk)",
        "No answers: g2",
    ]
    assert "back pain" not in digest

"""/board: contributions per member of a grid for this week or month, from the records.

The clock stands at Tuesday 2026-02-10 09:00 (Asia/Shanghai): the week is 02-09 to 02-15.
Screenings, check-ins, errands and praises are made through the console as people type
them; records before the week (and the shift data, while the shift commands are built
elsewhere) are written through the ORM into the bot's own database inside the test:
DutyPost, Shift with `credited_at` set (hours credited after the end), SignUp rows.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from storage import models
from storage.queries import next_number

TZ = ZoneInfo("Asia/Shanghai")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


async def seed_shift(db, grid: models.Grid, post: models.DutyPost, start: str, end: str,
                     people: dict[models.Person, str], creator: models.Person) -> None:
    shift = models.Shift(
        community_id=grid.community_id, number=await next_number(db, grid.community_id, "S"),
        grid_id=grid.id, post_id=post.id, starts_at=at(start), ends_at=at(end),
        slots=len(people), created_by_id=creator.id, credited_at=at(end),
    )
    db.add(shift)
    await db.flush()
    db.add_all(models.SignUp(shift_id=shift.id, person_id=p.id, state=state, at=at(start))
               for p, state in people.items())


async def seed_records(bot) -> None:
    """What the console cannot type: shifts with hours credited, and work done before the week."""
    async with bot.app.db.transaction() as db:
        grids = {g.code: g for g in await db.scalars(select(models.Grid))}
        people = {p.external_id: p for p in await db.scalars(select(models.Person))}
        wang, li, zhao, lead = people["wang"], people["li"], people["zhao"], people["lead"]
        g1, g2 = grids["g1"], grids["g2"]
        gate = models.DutyPost(community_id=g1.community_id, grid_id=g1.id, name="卡口 北门")
        patrol = models.DutyPost(community_id=g2.community_id, grid_id=g2.id, name="巡查")
        db.add_all([gate, patrol])
        await db.flush()
        # This week: 4 h each for wang and li; li's no-show on another shift earns nothing.
        await seed_shift(db, g1, gate, "2026-02-10T04:00", "2026-02-10T08:00",
                         {wang: "slot", li: "slot"}, lead)
        await seed_shift(db, g1, gate, "2026-02-09T20:00", "2026-02-09T22:30", {li: "noshow"}, lead)
        # Last Sunday evening: before the week, inside the month.
        await seed_shift(db, g1, gate, "2026-02-08T18:00", "2026-02-08T22:00", {wang: "slot"}, lead)
        # Another grid's shift: zhao's hours count on g2's board only.
        await seed_shift(db, g2, patrol, "2026-02-10T05:00", "2026-02-10T08:00", {zhao: "slot"}, lead)
        # A screening late last Sunday and an errand done in January: outside the week.
        home = await db.scalar(select(models.Household).where(models.Household.code == "3-2-601"))
        db.add(models.Screening(
            community_id=g1.community_id, grid_id=g1.id, household_id=home.id, round_no=1,
            status="ok", by_id=wang.id, at=at("2026-02-08T23:30"),
        ))
        db.add(models.Errand(
            community_id=g1.community_id, number=await next_number(db, g1.community_id, "E"),
            grid_id=g1.id, text="上月的代办", state="done", posted_by_id=lead.id,
            posted_at=at("2026-01-20T09:00"), claimed_by_id=wang.id,
            claimed_at=at("2026-01-20T09:30"), done_at=at("2026-01-20T11:00"),
        ))


async def seed_week(community) -> None:
    await community.say(
        ":as admin", ":in g2chat", "/household add 5-1-101 5-1-102",
        ":as zhao Zhao", "/join", "/screen 5-1-101 ok",
        ":in g1chat",
        ":as wang", "/screen 3-1-101 ok", "/screen 3-1-102 away", "/screen 3-1-201 ok people=3",
        "/watch add 3-2-101 张三 home-observation",
        ":dm", "/checkin K1 36.5", "/checkin K1 36.6 ok",
        ":as li", ":in g1chat", "/screen 3-1-202 ok",
        ":as resident", "/errand 买菜", "/errand 取药", "/errand 倒垃圾",
        ":as wang", "/claim E1", "/done E1", "/claim E2", "/done E2",
        ":as li", "/claim E3",  # claimed, not done: not counted
        ":as lead", "/praise @wang 连续三天守卡口",
    )
    await seed_records(community)


async def test_the_boards_of_a_seeded_week_match_the_records(community):
    await seed_week(community)
    out = await community.say(":as li", ":in g1chat", "/board")
    [board] = out.texts("g1chat")
    assert "贡献榜 · 本周（2026-02-09 至 2026-02-15）" in board
    lines = board.splitlines()
    # wang: 3 screenings this week (not last Sunday's), 2 check-ins, E1 and E2 done (not
    # January's), 4 h on duty (not last Sunday's shift), 1 praise. li: E3 claimed, not done;
    # a no-show earns no hours.
    assert lines[1:4] == [
        "1. @wang：排查 3 · 随访 2 · 代办 2 · 值班 4 小时 · 表扬 1",
        "2. @li：排查 1 · 随访 0 · 代办 0 · 值班 4 小时 · 表扬 0",
        "本周暂无记录：@lead",
    ]
    assert "zhao" not in board and "resident" not in board  # another grid; not a member

    # The same board in a member's direct chat.
    out = await community.say(":as wang", ":dm", "/board")
    assert out.texts("dm:wang") == [board]

    # The month includes last Sunday's screening and shift, not January's errand.
    out = await community.say(":in g1chat", "/board month")
    [month] = out.texts("g1chat")
    assert "贡献榜 · 本月（2026-02-01 至 2026-02-28）" in month
    assert "1. @wang：排查 4 · 随访 2 · 代办 2 · 值班 8 小时 · 表扬 1" in month.splitlines()
    out = await community.say("/board 本月")
    assert out.texts("g1chat") == [month]

    # In HQ the secretary sees every grid, each with its own members only.
    out = await community.say(":as admin", ":in hq", "/board week")
    [hq] = out.texts("hq")
    g1, g2 = hq.split("▌g2 二网格")
    assert "▌g1 一网格" in g1
    assert "1. @wang：排查 3 · 随访 2 · 代办 2 · 值班 4 小时 · 表扬 1" in g1 and "zhao" not in g1
    assert "1. @zhao：排查 1 · 随访 0 · 代办 0 · 值班 3 小时 · 表扬 0" in g2 and "wang" not in g2

    # A new week starts empty (a restart moves the clock without running a week of jobs).
    await community.restart("2026-02-16T09:00")
    out = await community.say(":as wang", ":in g1chat", "/board")
    board = out.texts("g1chat")[-1]
    assert "2026-02-16 至 2026-02-22" in board and "本周还没有记录。" in board


async def test_board_in_english(community):
    await community.say(":as admin", ":in hq", "/set lang en")
    out = await community.say(":as wang", ":in g1chat", "/screen 3-1-101 ok", "/board")
    lines = out.texts("g1chat")[-1].splitlines()
    assert lines[0] == "🏅 Contribution board · this week (2026-02-09 to 2026-02-15)"
    assert lines[1] == "1. @wang: screenings 1 · check-ins 0 · errands 0 · shifts 0 h · praises 0"
    assert lines[2] == "Nothing yet this week: @lead, @li"


async def test_bad_period_and_refusals(community):
    out = await community.say(":as wang", ":in g1chat", "/board year")
    assert "用法：\n/board [week|month]" in out.text("g1chat")
    out = await community.say(":as resident", "/board")
    assert out.texts() == ["/board 需要先报到成为网格员：请在本群发送 /join。"]
    out = await community.say(":as wang", ":in hq", "/board")  # a member, of g1
    assert out.texts() == ["/board 请在你所在网格的群聊中使用。"]

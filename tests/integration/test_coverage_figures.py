"""A grid's coverage, read in one statement, gives exactly what its definition says: per
building, the households whose latest screening of the current round exists, and the
latest statuses counted (a fever temperature counts as a fever), checked against a count
made here from every row, through rescreenings, a new round and households added later.
On SQLite and on PostgreSQL."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from commands.keypersons import FEVER_AT
from commands.screening import grid_coverage
from storage import models
from tests.harness import ConsoleBot, setup_community

Figures = tuple[list[tuple[str, int, int]], dict[str, int]]


async def figures(bot: ConsoleBot, code: str) -> tuple[Figures, Figures]:
    """A grid's buildings as (building, screened, total) and its statuses: as counted here
    from every household and screening of the grid, and as `grid_coverage` says."""
    async with bot.app.db.transaction() as db:
        grid = await db.scalar(select(models.Grid).where(models.Grid.code == code))
        households = (await db.scalars(select(models.Household))).all()
        latest: dict[int, models.Screening] = {}
        for s in (await db.scalars(select(models.Screening).order_by(models.Screening.id))):
            if s.grid_id == grid.id and s.round_no == grid.round_no:
                latest[s.household_id] = s
        ours = [h for h in households if h.grid_id == grid.id]
        totals = Counter(h.building for h in ours)
        screened = Counter(h.building for h in ours if h.id in latest)
        statuses = Counter(
            "fever" if s.status == "fever" or (s.temperature or 0) >= FEVER_AT else s.status
            for s in latest.values()
        )
        counted = (sorted((b, screened[b], totals[b]) for b in totals), dict(statuses))
        coverage = await grid_coverage(db, grid)
        assert coverage.round_no == grid.round_no
        said = (sorted((b.building, b.screened, b.total) for b in coverage.buildings),
                coverage.statuses)
        return counted, said


async def assert_as_counted(bot: ConsoleBot, code: str) -> Figures:
    counted, said = await figures(bot, code)
    assert said == counted
    return said


async def test_coverage_is_what_the_records_say_on_each_database(tmp_path, database_url):
    bot = ConsoleBot(tmp_path, database_url=database_url)
    await bot.start()
    try:
        await setup_community(bot)
        await bot.say(":as lead", ":in g1chat", "/household add 5-1-101 5-1-102 12-1-101")
        await bot.say(":as admin", ":in g2chat", "/household add 7-1-101 7-1-102")
        await assert_as_counted(bot, "g1")  # nothing screened: every building 0/n

        out = await bot.say(
            ":as wang", ":in g1chat",
            "/screen 3-1-101 ok people=3", "/screen 3-1-102 away", "/screen 5-1-101 ok temp=38.2",
            "/screen 5-1-102 refused", "/screen 3-1-101 fever",  # again: the latest counts
            "/screen 3-1-102 ok temp=36.5", "/screen 12-1-101 outsider",
        )
        assert "5/27" in out.texts("g1chat")[-1]
        await bot.say(":as admin", ":in g2chat", "/screen 7-1-101 fever")  # another grid
        assert await assert_as_counted(bot, "g1") == (
            [("12", 1, 1), ("3", 2, 24), ("5", 2, 2)],
            {"ok": 1, "fever": 2, "refused": 1, "outsider": 1}
        )
        await assert_as_counted(bot, "g2")

        out = await bot.say(":as lead", ":in g1chat", "/round new", "/round new confirm")
        assert "已排查 5/27 户" in out.text()
        await assert_as_counted(bot, "g1")
        out = await bot.say(":as wang", "/screen 5-1-101 ok")
        assert "第 2 轮排查：1/27" in out.text()
        await bot.say(":as lead", "/household add 5-2-101 6-1-101")
        out = await bot.say(":as wang", "/screen 6-1-101 fever", "/screen 5-1-101 away")
        assert "第 2 轮排查：2/29" in out.texts("g1chat")[-1]
        assert await assert_as_counted(bot, "g1") == (
            [("12", 0, 1), ("3", 0, 24), ("5", 1, 3), ("6", 1, 1)], {"fever": 1, "away": 1}
        )
    finally:
        await bot.stop()

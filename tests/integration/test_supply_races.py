"""Supplies under concurrency, through the real dispatcher against the real database, on
SQLite and on PostgreSQL: twenty members reporting a level below the minimum at the same
moment alert the leader once; twenty first reports of a new item make one item; two people
pressing "met" at once mark a request once and tell the asker once."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from bot.transports.base import Incoming
from storage import models
from tests.harness import ConsoleBot, grid_chat_message, parse_blocks, setup_community

REPORTERS = 20


async def at_once(bot: ConsoleBot, messages: list[Incoming]):
    mark = bot.stdout.tell()
    await asyncio.gather(*(bot.app.handle(m) for m in messages))
    return parse_blocks(bot.stdout.getvalue()[mark:])


async def test_concurrent_reports_alert_once_and_create_one_item(tmp_path, database_url):
    bot = ConsoleBot(tmp_path, database_url=database_url)
    await bot.start()
    try:
        await setup_community(bot)
        members = [f"v{i:02d}" for i in range(REPORTERS)]
        await bot.say(":in g1chat", *(line for v in members for line in (f":as {v}", "/join")))
        await bot.say(":as lead", "/supply min 口罩 500", ":as wang", "/supply 口罩 800")

        out = await at_once(bot, [grid_chat_message(v, f"/supply 口罩 {400 + i}", f"{v}-1")
                                  for i, v in enumerate(members)])
        assert len([t for t in out.texts("dm:lead") if "物资预警" in t]) == 1
        replies = out.texts("g1chat")
        assert len(replies) == REPORTERS
        assert sum("已低于最低库存" in r for r in replies) == 1
        assert sum("仍低于最低库存" in r for r in replies) == REPORTERS - 1

        out = await at_once(
            bot, [grid_chat_message(v, "/supply 体温枪 5", f"{v}-2") for v in members]
        )
        assert len(out.texts("g1chat")) == REPORTERS
        async with bot.app.db.transaction() as db:
            items = await db.scalar(
                select(func.count()).select_from(models.SupplyItem)
                .where(models.SupplyItem.name == "体温枪")
            )
            reports = await db.scalar(select(func.count()).select_from(models.SupplyReport))
        assert items == 1
        assert reports == 1 + REPORTERS + REPORTERS

        # The listing and the digest read the history with a window function: on each database.
        out = await bot.say(":as admin", ":in hq", "/supplies all", "/digest")
        listing, digest = out.texts("hq")
        assert "⚠ 口罩：g1 4" in listing and "体温枪：g1 5 个 · g2 —" in listing
        assert "物资：1 项低于最低库存" in digest
    finally:
        await bot.stop()


async def test_a_request_met_twice_at_once_is_marked_and_told_once(tmp_path, database_url):
    bot = ConsoleBot(tmp_path, database_url=database_url)
    await bot.start()
    try:
        await setup_community(bot)
        await bot.say(":as admin", ":in g1chat", "/role @lead2 leader", ":as lead2", "/join",
                      ":as wang", "/need 口罩 1000")
        out = await at_once(
            bot, [grid_chat_message(u, "/need done N1", f"{u}-3") for u in ("lead", "lead2")]
        )
        replies = out.texts("g1chat")
        assert len(replies) == 2
        assert sum("已满足" in r and "确认" in r for r in replies) == 1
        assert sum("已经标记为满足" in r for r in replies) == 1
        assert len(out.texts("dm:wang")) == 1
    finally:
        await bot.stop()

"""Fifty members claim one errand at the same moment, each through the real dispatcher
against the real database: exactly one wins, the others are told who has it. On SQLite
and on PostgreSQL."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import func, select

from storage import models
from tests.harness import ConsoleBot, grid_chat_message, parse_blocks, setup_community

CLAIMANTS = 50


async def test_fifty_concurrent_claims_have_exactly_one_winner(tmp_path, database_url, request):
    bot = ConsoleBot(tmp_path, database_url=database_url)
    await bot.start()
    try:
        await setup_community(bot)
        volunteers = [f"v{i:02d}" for i in range(CLAIMANTS)]
        await bot.say(":in g1chat", *(line for v in volunteers for line in (f":as {v}", "/join")))
        await bot.say(":as zhang", "/errand 买菜 for=3-1-101")

        mark = bot.stdout.tell()
        started = time.perf_counter()
        await asyncio.gather(*(
            bot.app.handle(grid_chat_message(v, "/claim E1", f"claim-{v}")) for v in volunteers
        ))
        elapsed = time.perf_counter() - started
        out = parse_blocks(bot.stdout.getvalue()[mark:])

        async with bot.app.db.transaction() as db:
            errand = await db.scalar(select(models.Errand).where(models.Errand.number == 1))
            winner = await db.get(models.Person, errand.claimed_by_id)
            audited = await db.scalar(
                select(func.count()).select_from(models.AuditEntry)
                .where(models.AuditEntry.command == "claim")
            )
        assert errand.state == "claimed" and winner.external_id in volunteers
        replies = out.texts("g1chat")
        assert len(replies) == CLAIMANTS
        assert [r for r in replies if "认领了 E1" in r] == [
            f"✋ @{winner.external_id} 认领了 E1。请在 3小时内完成，完成后发送 /done E1；"
            "做不了请发送 /release E1。"
        ]
        taken = (f"E1 已由 @{winner.external_id} 认领，谢谢你！"
                 "发送 /errands open 看看还有哪些待认领。")
        assert replies.count(taken) == CLAIMANTS - 1
        assert len(out.texts("dm:zhang")) == 1  # the poster hears of the one claim
        assert audited == 1
        backend = request.node.callspec.params["database_url"]
        print(f"\n{CLAIMANTS} concurrent claims on {backend}: {elapsed:.2f} s")
    finally:
        await bot.stop()


async def test_life_cycle_and_claim_window_on_each_database(tmp_path, database_url):
    """The row locks of /done, /release, /cancel and of the claim sweep, on each database."""
    bot = ConsoleBot(tmp_path, database_url=database_url)
    await bot.start()
    try:
        await setup_community(bot)
        await bot.say(":as zhang", ":in g1chat", "/errand 买菜", "/errand 取药")
        out = await bot.say(":as wang", "/claim E1", "/release E1", ":as li", "/claim E1")
        assert "@li 认领了 E1" in out.text("g1chat")
        out = await bot.say(":wait 3h")
        assert out.chats() == ["dm:li"] and "提醒" in out.text()
        out = await bot.say(":wait 3h")
        assert out.chats() == ["g1chat", "dm:li"] and "E1 重新开放" in out.text("g1chat")
        out = await bot.say(":as wang", "/claim E1", "/done E1 已送到", ":as zhang", "/cancel E2")
        assert "E1 已完成" in out.text("g1chat") and "E2 已由 @zhang 取消" in out.text("g1chat")
        async with bot.app.db.transaction() as db:
            states = (
                await db.scalars(select(models.Errand.state).order_by(models.Errand.number))
            ).all()
        assert states == ["done", "cancelled"]
    finally:
        await bot.stop()

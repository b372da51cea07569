"""A priority request cancelled by the person who asked at the moment a leader marks it met
(the button), each through the real dispatcher against the real database: exactly one of
the two counts, the other is told how it was closed. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlalchemy import String, cast, func, select

from storage import models
from tests.harness import ConsoleBot, grid_chat_message, parse_blocks, setup_community

ROUNDS = 5


async def test_a_cancel_and_a_met_at_once_close_a_request_once(tmp_path, database_url):
    bot = ConsoleBot(tmp_path, database_url=database_url)
    await bot.start()
    try:
        await setup_community(bot)
        await bot.say(":as wang", ":in g1chat",
                      *(f"/need 防护服 {n + 1}0 套" for n in range(ROUNDS)))
        for n in range(1, ROUNDS + 1):
            mark = bot.stdout.tell()
            await asyncio.gather(
                bot.app.handle(grid_chat_message("wang", f"/need cancel N{n}", f"cancel-{n}")),
                bot.app.handle(grid_chat_message("lead", f"/need done N{n}", f"done-{n}")),
            )
            out = parse_blocks(bot.stdout.getvalue()[mark:])
            async with bot.app.db.transaction() as db:
                need = await db.scalar(select(models.SupplyNeed).where(
                    models.SupplyNeed.number == n))
                entries = await db.scalar(
                    select(func.count()).select_from(models.AuditEntry).where(
                        models.AuditEntry.command.in_(("need cancel", "need done")),
                        cast(models.AuditEntry.refs, String).like(f'%"N{n}"%'),
                    )
                )
            assert need.state in ("cancelled", "met") and need.closed_at is not None
            assert entries == 1  # the one that counted; the other rolled back
            replies = out.texts("g1chat")
            assert len(replies) == 2
            if need.state == "cancelled":
                assert any(f"N{n}（g1 防护服" in r and "已取消" in r for r in replies)
                assert any(f"N{n} 已于" in r and "取消，无需再处理" in r for r in replies)
                assert need.met_by_id is None
            else:
                assert any(f"N{n}（g1 防护服" in r and "已满足" in r for r in replies)
                assert any(f"N{n} 已经标记为满足（@lead" in r for r in replies)
    finally:
        await bot.stop()

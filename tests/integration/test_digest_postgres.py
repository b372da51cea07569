"""Two bot instances on one PostgreSQL database send each daily digest exactly once."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import func, select

from storage import models
from tests.harness import ConsoleBot, setup_community


def digests(*outputs) -> list[str]:
    return [t for out in outputs for t in out.texts("hq") if "每日汇总" in t]


async def sent_count(bot: ConsoleBot) -> int:
    async with bot.app.db.transaction() as db:
        return await db.scalar(select(func.count()).select_from(models.DigestSent))


async def two_bots(tmp_path, postgres_url) -> tuple[ConsoleBot, ConsoleBot]:
    first = ConsoleBot(tmp_path / "first", database_url=postgres_url, start="2026-02-10T19:00")
    second = ConsoleBot(tmp_path / "second", database_url=postgres_url, start="2026-02-10T19:00")
    await first.start()
    await setup_community(first)
    await second.start()  # after setup, so that it schedules the community's digest too
    return first, second


async def test_two_instances_reaching_the_digest_time_send_it_once(tmp_path, postgres_url, caplog):
    first, second = await two_bots(tmp_path, postgres_url)
    try:
        await first.say(":clock 2026-02-10T19:59")
        await second.say(":clock 2026-02-10T19:59")
        with caplog.at_level(logging.ERROR):
            outputs = await asyncio.gather(
                first.say(":clock 2026-02-10T20:00"), second.say(":clock 2026-02-10T20:00")
            )
        assert len(digests(*outputs)) == 1
        assert await sent_count(first) == 1
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # the loser just stops
    finally:
        await first.stop()
        await second.stop()


async def test_two_instances_back_after_downtime_send_the_late_digest_once(tmp_path, postgres_url):
    first, second = await two_bots(tmp_path, postgres_url)
    try:
        await first.stop()
        await second.stop()
        # Both come back after 20:00 (one after the other: migrations at start-up are not
        # meant to run twice at once in one process).
        outputs = [
            await first.restart(clock="2026-02-10T21:30"),
            await second.restart(clock="2026-02-10T21:31"),
        ]
        [late] = digests(*outputs)
        assert "补发" in late
        assert await sent_count(second) == 1
    finally:
        await first.stop()
        await second.stop()

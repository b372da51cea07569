"""Faults at each boundary: the database locked (SQLite) or restarted (PostgreSQL, under
load), a template raising, the Telegram server erroring or gone. Each time the bot logs,
retries what is safe to retry, tells the person when it cannot, and keeps serving others;
no command is silently lost."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot import dispatch
from bot.transports.base import Incoming
from storage import db as db_module
from storage import models
from tests.harness import ConsoleBot, parse_blocks, setup_community
from tests.integration.test_telegram import (
    ADMIN,
    HQ,
    WANG,
    config_for,
    handled,
    populate,
    running,
    say,
    texts,
)
from tests.servers.botapi import FakeBotAPI, botapi
from tests.servers.postgres import Postgres, PostgresUnavailable

__all__ = ["botapi"]  # the fixture, used by name

TRY_AGAIN = "数据库暂时无法访问"
APOLOGY = "抱歉，处理这条命令时出了问题"


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Busy timeout and retry pauses short enough for a test (same logic as in production)."""
    monkeypatch.setattr(db_module, "WRITER_TIMEOUT", 0.3)
    monkeypatch.setattr(dispatch, "FIRST_PAUSE", 0.1)


async def count(bot: ConsoleBot, model) -> int:
    async with bot.app.db.transaction() as db:
        return await db.scalar(select(func.count()).select_from(model))


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another process's writer: holds SQLite's write lock until rolled back."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_sqlite_locked_for_a_moment_the_command_waits_and_completes(
    tmp_path: Path, quick_retries: None
) -> None:
    bot = ConsoleBot(tmp_path)
    await bot.start()
    try:
        await setup_community(bot)
        other = hold_write_lock(tmp_path / "gridbot.db")
        asyncio.get_running_loop().call_later(0.8, other.rollback)
        out = await bot.say(":as zhang Zhang", ":in g1chat", "/errand 买菜")
        assert "新代办 E1：买菜" in out.text()
        assert TRY_AGAIN not in out.text()
        assert await count(bot, models.Errand) == 1
        other.close()
    finally:
        await bot.stop()


async def test_sqlite_locked_for_long_the_person_is_told_and_nothing_half_done(
    tmp_path: Path, quick_retries: None
) -> None:
    bot = ConsoleBot(tmp_path)
    await bot.start()
    try:
        await setup_community(bot)
        other = hold_write_lock(tmp_path / "gridbot.db")
        out = await bot.say(":as zhang Zhang", ":in g1chat", "/errand 买菜")
        assert out.chats() == ["g1chat"]
        assert TRY_AGAIN in out.text() and APOLOGY not in out.text()
        other.rollback()
        other.close()
        assert await count(bot, models.Errand) == 0
        # Lock gone: this chat and the others are served again.
        out = await bot.say("/errand 买菜")
        assert "新代办 E1：买菜" in out.text()
        out = await bot.say(":as admin", ":in hq", "/grid list")
        assert "g1" in out.text()
    finally:
        await bot.stop()


async def test_a_template_that_raises_gets_an_apology_and_rolls_back(
    community: ConsoleBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = community
    renderer = bot.app.renderer
    render = renderer.render

    def broken(lang, name, /, **values):
        if name == "errands/posted":
            raise RuntimeError("template bug")
        return render(lang, name, **values)

    monkeypatch.setattr(renderer, "render", broken)
    out = await bot.say(":as zhang Zhang", ":in g1chat", "/errand 买菜")
    assert APOLOGY in out.text()
    assert await count(bot, models.Errand) == 0
    out = await bot.say(":as wang", "/errands")  # other commands still work
    assert APOLOGY not in out.text() and out.texts()
    monkeypatch.setattr(renderer, "render", render)
    out = await bot.say(":as zhang", "/errand 买菜")
    assert "新代办 E1：买菜" in out.text()  # the failed one used no number


@pytest.mark.slow  # a PostgreSQL server of its own, restarted under load
async def test_postgres_restarted_under_load_loses_no_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch, "FIRST_PAUSE", 0.5)
    server = Postgres()
    try:
        server.start()
    except PostgresUnavailable as error:
        pytest.skip(f"PostgreSQL unavailable: {error}")
    try:
        url = server.create_database("faults")
        bot = ConsoleBot(tmp_path, database_url=url)
        await bot.start()
        await setup_community(bot)
        mark = bot.stdout.tell()
        total = 60

        async def resident_asks(n: int) -> None:
            await bot.app.handle(Incoming(
                transport="console", chat="g1chat", sender=f"r{n}", sender_name=f"R{n}",
                sender_username=f"r{n}", text=f"/errand 任务{n:02}", message_id=f"pg-{n}",
            ))

        async def restart_midway() -> None:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(server.restart, 1.0)

        load = [resident_asks(n) for n in range(total)]
        await asyncio.gather(restart_midway(), *load)
        out = parse_blocks(bot.stdout.getvalue()[mark:])
        answers = out.texts("g1chat")
        posted = [t for t in answers if t.startswith("新代办 E")]
        told = [t for t in answers if TRY_AGAIN in t]
        assert len(posted) + len(told) == total  # each one completed or was told
        assert not [t for t in answers if APOLOGY in t]
        assert await count(bot, models.Errand) == len(posted)
        print(f"\nPostgreSQL restarted under {total} commands: {len(posted)} completed, "
              f"{len(told)} told to try again, 0 lost")
        await bot.stop()
    finally:
        server.stop()


async def test_telegram_server_gone_and_back_commands_are_answered(
    botapi: FakeBotAPI, tmp_path: Path
) -> None:
    populate(botapi)
    async with running(config_for(botapi, tmp_path)):
        await say(botapi, ADMIN, HQ, "/community 阳光社区")
        await botapi.stop()  # Telegram unreachable: polling fails and backs off
        await asyncio.sleep(1.5)
        botapi.user_says(ADMIN, HQ, "/grid add g1 一网格")  # typed during the outage
        await botapi.start()
        await handled(botapi, timeout=60)
        assert any("g1" in t for t in texts(botapi.sent(HQ)))

        # getUpdates answering 502 for a while: polling goes on once it recovers.
        botapi.fail_next("getUpdates", n=3, status=502)
        before = len(botapi.sent(WANG))
        botapi.user_says(WANG, WANG, "/start")
        await handled(botapi, timeout=60)
        assert texts(botapi.sent(WANG)[before:])

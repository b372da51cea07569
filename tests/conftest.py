"""Shared fixtures: the console-driven bot, and the real servers of tests/servers."""

from __future__ import annotations

import pytest_asyncio

from tests.harness import ConsoleBot, setup_community
from tests.servers.postgres import postgres, postgres_url  # noqa: F401  (fixtures)


@pytest_asyncio.fixture
async def bot(tmp_path):
    """A started bot on SQLite in a temp dir, clock at 2026-02-10 09:00 Asia/Shanghai."""
    console_bot = ConsoleBot(tmp_path)
    await console_bot.start()
    yield console_bot
    await console_bot.stop()


@pytest_asyncio.fixture
async def community(bot):
    """`bot` with a community set up (see tests.harness.setup_community)."""
    await setup_community(bot)
    return bot
from tests.servers.synapse import synapse, synapse_factory  # noqa: E402, F401  (fixtures)

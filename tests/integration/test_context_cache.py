"""The context cache (bot/context_cache.py) never lets a change go unseen: a role taken away,
a chat linked elsewhere, a setting changed — by this instance, or by another instance on the
same PostgreSQL — counts for the very next message."""

from __future__ import annotations

import contextlib

from tests.harness import ConsoleBot, setup_community


async def test_a_role_taken_away_counts_for_the_next_message(tmp_path, database_url):
    bot = ConsoleBot(tmp_path, database_url=database_url)
    await bot.start()
    try:
        await setup_community(bot)
        out = await bot.say(":in g1chat", ":as wang Wang", "/screen 3-1-101 ok")
        assert "3-1-101" in out.texts("g1chat")[-1]  # accepted: wang is a member
        out = await bot.say(":as admin Admin", "/role @wang none", ":as wang Wang",
                            "/screen 3-1-102 ok")
        assert "3-1-102" not in out.texts("g1chat")[-1]
        assert "/join" in out.texts("g1chat")[-1]  # refused: not a member any more
    finally:
        await bot.stop()


async def test_a_change_made_by_another_instance_counts_at_once(tmp_path, postgres_url):
    first = ConsoleBot(tmp_path / "first", database_url=postgres_url)
    second = ConsoleBot(tmp_path / "second", database_url=postgres_url)
    await first.start()
    await second.start()
    try:
        await setup_community(first)
        # The first instance has seen wang as a member of g1 (and keeps that in its cache).
        out = await first.say(":in g1chat", ":as wang Wang", "/screen 3-1-101 ok")
        assert "3-1-101" in out.texts("g1chat")[-1]
        out = await first.say("/screen 3-1-103 ok")
        assert "3-1-103" in out.texts("g1chat")[-1]
        # The second instance takes the role away, and changes the community's language.
        await second.say(":in g1chat", ":as admin Admin", "/role @wang none")
        await second.say(":in hq", "/set lang en")
        out = await first.say(":in g1chat", ":as wang Wang", "/screen 3-1-102 ok")
        reply = out.texts("g1chat")[-1]
        assert "3-1-102" not in reply and "/join" in reply  # refused, as the second decided
        assert "for members" in reply  # and in English, as the second set it
    finally:
        await second.stop()
        await first.stop()


async def test_a_change_rolled_back_leaves_nothing_stale(tmp_path):
    """A command that changed a cached row and was then refused leaves the row expired; the
    next message reads it again instead of failing on it."""
    bot = ConsoleBot(tmp_path)
    await bot.start()
    try:
        await setup_community(bot)
        first = await bot.say(":in g1chat", ":as wang Wang", "/me")
        seen = bot.app.context_cache._seen[("console", "g1chat", "wang")]
        async with bot.app.db.transaction() as db:
            db.add(seen.found.person)
            with contextlib.suppress(RuntimeError):
                async with db.begin_nested():
                    seen.found.person.display_name = "Mallory"
                    raise RuntimeError("refused after changing the row")
        again = await bot.say("/me")
        assert again.texts("g1chat") == first.texts("g1chat")  # not an apology, not Mallory
    finally:
        await bot.stop()

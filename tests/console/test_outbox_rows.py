"""The rows a command queues are written together when it has finished: each gets its id in
the order it was queued, each reader still gets the text rendered for them (a message to many
chats of one kind is rendered once per kind of reader), and a refused command writes none."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.context import Actions
from bot.errors import Reject
from bot.registry import REGISTRY, command
from bot.roles import Role
from storage import models
from tests.harness import ConsoleBot, setup_community

NAME = "张三"


@pytest.fixture
def scatter():
    """`/scatter [fail]`, test only: one key person's details to three group chats, the caller,
    two people by direct message; with `fail`, refused once everything is queued. Yields the
    rows the command got back from `post`, `tell` and `reply`, in the order it queued them."""
    queued: list[models.OutboxMessage] = []

    @command("scatter", role=Role.RESIDENT)
    async def run(ctx, how: str = "") -> None:
        """Test only."""
        kp = await ctx.db.scalar(select(models.KeyPerson))
        chats = {c.external_id: c for c in (await ctx.db.scalars(select(models.Chat))).all()}
        people = {p.username: p for p in (await ctx.db.scalars(select(models.Person))).all()}
        values = dict(kp=kp, household="3-1-102", by="@admin", window=timedelta(hours=12))
        template = "keypersons/assigned_to_you"
        queued.append(ctx.post(chats["g1chat"], template, **values))
        queued.append(ctx.tell(people["li"], template, origin=ctx.chat, **values))
        queued.append(ctx.post(chats["hq"], template, **values))
        queued.append(ctx.post(chats["g2chat"], template, **values))
        queued.append(ctx.tell(people["lead"], template, origin=ctx.chat, **values))
        queued.append(ctx.reply(template, **values))
        if how == "fail":
            raise Reject("core/no_grid")

    try:
        yield queued
    finally:
        del REGISTRY.groups["scatter"]


async def _with_key_person(bot: ConsoleBot) -> None:
    await setup_community(bot)
    await bot.say(":as wang", ":dm", f"/watch add 3-1-102 {NAME} close-contact")
    for who in ("li", "lead"):  # they opened a direct chat with the bot
        await bot.say(f":as {who}", ":dm", "/help")


async def _rows(bot: ConsoleBot) -> list[models.OutboxMessage]:
    async with bot.app.db.transaction() as db:
        return list((await db.scalars(
            select(models.OutboxMessage).order_by(models.OutboxMessage.id)
        )).all())


async def _check_rows_in_order_each_rendered_for_its_reader(bot: ConsoleBot, queued) -> None:
    await _with_key_person(bot)
    before = len(await _rows(bot))
    out = await bot.say(":as admin", ":in g1chat", "/scatter")
    ids = [row.id for row in queued]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(set(ids))
    rows = (await _rows(bot))[before:]
    assert [row.id for row in rows] == ids  # written together, nothing between them
    people = {row.person_id for row in rows if row.person_id}
    assert [row.chat for row in rows] == ["g1chat", None, "hq", "g2chat", None, "g1chat"]
    assert len(people) == 2
    texts = [row.text for row in rows]
    # The group chats and the volunteer see no details; the HQ chat and the grid's leader do.
    assert [NAME in text for text in texts] == [False, False, True, False, True, False]
    assert texts[0] == texts[1] == texts[3] == texts[5] and "K1" in texts[0]
    assert texts[2] == texts[4]
    assert out.texts("g2chat") == [texts[3]] and out.texts("hq") == [texts[2]]


async def test_rows_written_together_keep_their_order_ids_and_readers(bot, scatter):
    await _check_rows_in_order_each_rendered_for_its_reader(bot, scatter)


async def test_rows_written_together_on_postgresql(tmp_path, postgres_url, scatter):
    bot = ConsoleBot(tmp_path, database_url=postgres_url)
    await bot.start()
    try:
        await _check_rows_in_order_each_rendered_for_its_reader(bot, scatter)
    finally:
        await bot.stop()


async def test_a_refused_command_writes_none_of_its_rows(bot, scatter):
    await _with_key_person(bot)
    before = len(await _rows(bot))
    out = await bot.say(":as admin", ":in g1chat", "/scatter fail")
    # (The dispatcher may run a refused command again to answer it: none of its runs wrote.)
    assert scatter and all(row.id is None for row in scatter)
    [refusal] = (await _rows(bot))[before:]
    assert refusal.chat == "g1chat" and out.texts() == [refusal.text]
    assert NAME not in refusal.text
    async with bot.app.db.transaction() as db:
        assert await db.scalar(select(func.count()).select_from(models.OutboxMessage)
                               .where(models.OutboxMessage.text == "")) == 0


async def test_an_announcement_to_many_chats_is_one_row_each_in_order(community):
    for i in range(3, 9):
        await community.say(":as admin", ":in hq", f"/grid add g{i} {i}网格",
                            f":in g{i}chat", f"/grid link g{i}")
    before = len(await _rows(community))
    out = await community.say(":in hq", "/announce 明早 7 点核酸检测 confirm")
    rows = (await _rows(community))[before:]
    grid_chats = [f"g{i}chat" for i in range(1, 9)]
    assert [row.chat for row in rows] == grid_chats + ["hq"]
    assert [row.pin for row in rows] == [True] * 8 + [False]
    assert {row.text for row in rows[:8]} == {"📢 阳光社区 公告\n明早 7 点核酸检测"}
    assert out.chats() == grid_chats + ["hq"]


async def _check_more_rows_than_one_batch(bot: ConsoleBot) -> None:
    """2,500 rows (PostgreSQL sends them in batches of 1,000): each row's id is the one its
    chat's row was written with, in the order queued."""
    chats = [models.Chat(id=-i, transport="console", external_id=f"c{i}", is_direct=False)
             for i in range(2500)]
    async with bot.app.db.transaction() as db:
        actions = Actions(app=bot.app, db=db, now=bot.app.clock.now())
        for i, chat in enumerate(chats):
            actions.post(chat, "core/no_grid", pin=i % 2 == 0)
        await actions.seal()
    ids = [row.id for row in actions.queued]
    assert ids == sorted(set(ids))
    async with bot.app.db.transaction() as db:
        written = dict((await db.execute(
            select(models.OutboxMessage.id, models.OutboxMessage.chat)
            .where(models.OutboxMessage.id.in_(ids))
        )).all())
    assert [written[i] for i in ids] == [chat.external_id for chat in chats]


async def test_more_rows_than_one_batch_keep_their_ids(bot):
    await _check_more_rows_than_one_batch(bot)


async def test_more_rows_than_one_batch_keep_their_ids_on_postgresql(tmp_path, postgres_url):
    bot = ConsoleBot(tmp_path, database_url=postgres_url)
    await bot.start()
    try:
        await _check_more_rows_than_one_batch(bot)
    finally:
        await bot.stop()

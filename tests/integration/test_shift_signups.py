"""Many members sign up for one shift at the same moment, each through the real dispatcher
against the real database: the slots fill up to the limit, the last slot goes to exactly
one of those racing for it, and everyone else is on the waiting list, each at their own
place. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import time

from sqlalchemy import select

from storage import models
from tests.harness import ConsoleBot, grid_chat_message, parse_blocks, setup_community

RACERS = 30
SLOTS = 3


async def signups(bot, number: int = 1) -> list[tuple[str, str]]:
    async with bot.app.db.transaction() as db:
        rows = await db.execute(
            select(models.Person.external_id, models.SignUp.state)
            .join(models.SignUp, models.SignUp.person_id == models.Person.id)
            .join(models.Shift, models.Shift.id == models.SignUp.shift_id)
            .where(models.Shift.number == number)
            .order_by(models.SignUp.id)
        )
        return [tuple(row) for row in rows.all()]


async def test_the_last_slot_has_exactly_one_winner_and_the_rest_wait_in_order(
    tmp_path, database_url, request
):
    bot = ConsoleBot(tmp_path, database_url=database_url)
    await bot.start()
    try:
        await setup_community(bot)
        volunteers = [f"v{i:02d}" for i in range(RACERS)]
        await bot.say(":in g1chat", *(line for v in volunteers for line in (f":as {v}", "/join")))
        await bot.say(
            ":as lead", "/post add 卡口", f"/shift add 卡口 tomorrow 08:00-12:00 slots={SLOTS}"
        )
        # All slots but the last are taken one after another.
        await bot.say(":as wang", "/signup S1", ":as li", "/signup S1")

        mark = bot.stdout.tell()
        started = time.perf_counter()
        await asyncio.gather(*(
            bot.app.handle(grid_chat_message(v, "/signup S1", f"/signup S1-{v}"))
            for v in volunteers
        ))
        elapsed = time.perf_counter() - started
        replies = parse_blocks(bot.stdout.getvalue()[mark:]).texts("g1chat")

        rows = await signups(bot)
        holders = [user for user, state in rows if state == "slot"]
        waiting = [user for user, state in rows if state == "waiting"]
        assert len(holders) == SLOTS and holders[:2] == ["wang", "li"]
        winner = holders[2]
        assert winner in volunteers
        assert sorted(waiting) == sorted(v for v in volunteers if v != winner)
        assert len(replies) == RACERS
        assert [r for r in replies if "报名了 S1" in r] == [
            f"✋ @{winner} 报名了 S1 卡口 02-11 08:00–12:00（3/3，已满）。去不了请发送 /unsign S1。"
        ]
        # Each waiting reply names a different place, and the places follow the list's order.
        places = {}
        for reply in replies:
            if found := re.search(r"@(v\d+) 已列入候补第 (\d+) 位", reply):
                places[found[1]] = int(found[2])
        assert sorted(places.values()) == list(range(1, RACERS))
        assert sorted(places, key=places.get) == waiting

        # The first in line moves up when a slot is given back, and is told.
        out = await bot.say(":as wang", "/unsign S1")
        assert f"候补 @{waiting[0]} 已递补" in out.text("g1chat")
        assert "你已从候补递补上 S1" in out.text(f"dm:{waiting[0]}")
        backend = request.node.callspec.params["database_url"]
        print(f"\n{RACERS} concurrent sign-ups for the last slot on {backend}: {elapsed:.2f} s")
    finally:
        await bot.stop()


async def test_concurrent_leaving_and_joining_never_overfill(tmp_path, database_url):
    """People leave and others sign up at once: never more than `slots` hold one, and a slot
    freed while people wait is taken from the list."""
    bot = ConsoleBot(tmp_path, database_url=database_url)
    await bot.start()
    try:
        await setup_community(bot)
        people = [f"p{i:02d}" for i in range(12)]
        await bot.say(":in g1chat", *(line for p in people for line in (f":as {p}", "/join")))
        await bot.say(
            ":as lead", "/post add 巡查", f"/shift add 巡查 today 11:00-12:00 slots={SLOTS}"
        )
        first = people[:6]
        for person in first:
            await bot.say(f":as {person}", "/signup S1")
        leaving = [grid_chat_message(p, "/unsign S1", f"/unsign S1-{p}") for p in first[:2]]
        joining = [grid_chat_message(p, "/signup S1", f"/signup S1-{p}") for p in people[6:]]
        await asyncio.gather(*(bot.app.handle(m) for m in leaving + joining))
        rows = await signups(bot)
        holders = [user for user, state in rows if state == "slot"]
        assert len(holders) == SLOTS
        assert not {p for p, _ in rows} & set(first[:2])
        assert len(rows) == len(people) - 2
        # Whoever waits, waits behind every holder in the list's order: no one jumped ahead.
        assert set(first[2:5]) <= set(holders)

        # A holder leaving the grid: their slot goes to the first in line (the freed shift
        # locked first, then the people waiting on it).
        waiting = [user for user, state in rows if state == "waiting"]
        await bot.say(":as p03", "/leave")
        rows = await signups(bot)
        assert "p03" not in {p for p, _ in rows}
        assert [user for user, state in rows if state == "slot"][-1] == waiting[0]

        # The life cycle's writes on this database: a swap, the clock's marks, the credit.
        await bot.say(":as p02", "/swap S1 @p00", ":as p00", "/signup S1")
        assert ("p00", "slot") in await signups(bot) and ("p02", "slot") not in await signups(bot)
        await bot.say(":wait 3h5m")
        async with bot.app.db.transaction() as db:
            shift = await db.scalar(select(models.Shift).where(models.Shift.number == 1))
        assert shift.reminded_at is not None and shift.started_alerted_at is not None
        assert shift.credited_at is not None
        out = await bot.say(":as p00", "/me")
        assert "累计值班：1 小时" in out.text("g1chat")
    finally:
        await bot.stop()


OVERLAP_RULE = "不符合休息规定「同一人的值班时间不能重叠」"
MAXHOURS_RULE = "不符合休息规定「每人每天值班不超过 8 小时」"
ROUNDS = 8


async def held_by(bot, user: str) -> list[tuple[int, str]]:
    async with bot.app.db.transaction() as db:
        rows = await db.execute(
            select(models.Shift.number, models.SignUp.state)
            .join(models.SignUp, models.SignUp.shift_id == models.Shift.id)
            .join(models.Person, models.Person.id == models.SignUp.person_id)
            .where(models.Person.external_id == user)
            .order_by(models.Shift.number)
        )
        return [tuple(row) for row in rows.all()]


async def race_own_signups(bots: list[ConsoleBot], user: str, numbers: list[int]) -> list[str]:
    """`user` signs up for each of the shifts at the same moment, each through the next of
    `bots`; the group's replies."""
    marks = [bot.stdout.tell() for bot in bots]
    await asyncio.gather(*(
        bots[i % len(bots)].app.handle(
            grid_chat_message(user, f"/signup S{n}", f"/signup S{n}-{user}")
        )
        for i, n in enumerate(numbers)
    ))
    return [reply for bot, mark in zip(bots, marks, strict=True)
            for reply in parse_blocks(bot.stdout.getvalue()[mark:]).texts("g1chat")]


async def test_one_person_signing_up_for_overlapping_shifts_at_once_gets_one(
    tmp_path, database_url
):
    """The rest rules are about one person across shifts: signing up for four overlapping
    shifts at the same instant gives exactly one slot and three refusals naming the rule —
    round after round, person after person. And with the daily limit at 8 hours, three
    back-to-back 4-hour shifts at once give two slots, not three. On PostgreSQL the sign-ups
    go to four instances on the one database (an instance runs the commands that arrive
    together in one transaction, one after another); SQLite has one writer at a time."""
    bot = ConsoleBot(tmp_path / "bot", database_url=database_url)
    await bot.start()
    bots = [bot]
    if database_url:
        bots += [ConsoleBot(tmp_path / f"bot{i}", database_url=database_url) for i in (2, 3, 4)]
        for other in bots[1:]:
            await other.start()
    try:
        await setup_community(bot)
        people = [f"r{i:02d}" for i in range(ROUNDS)]
        await bot.say(":in g1chat", *(line for p in people for line in (f":as {p}", "/join")))
        await bot.say(":as admin", ":in hq", "/set maxhours 8", ":in g1chat")
        # S1-S4 overlap each other pairwise; S5-S7 follow one another, 4 hours each.
        spans = ["08:00-12:00", "09:00-13:00", "10:00-14:00", "11:00-15:00",
                 "06:00-10:00", "10:00-14:00", "14:00-18:00"]
        await bot.say(":as lead", "/post add 卡口", "/post add 测温",
                      *(f"/shift add 卡口 tomorrow {s} slots={ROUNDS}" for s in spans[:4]))
        await bot.say(":as lead", *(f"/shift add 测温 02-12 {s} slots={ROUNDS}" for s in spans[4:]))

        for person in people:
            replies = await race_own_signups(bots, person, [1, 2, 3, 4])
            held = await held_by(bot, person)
            assert len(held) == 1 and held[0][1] == "slot", (person, held, replies)
            assert len(replies) == 4
            assert len([r for r in replies if f"@{person} 报名了 S{held[0][0]}" in r]) == 1
            refused = [r for r in replies if OVERLAP_RULE in r]
            assert len(refused) == 3, replies

        for person in people:
            replies = await race_own_signups(bots, person, [5, 6, 7])
            held = [n for n, state in await held_by(bot, person) if n >= 5 and state == "slot"]
            assert len(held) == 2, (person, held, replies)
            assert len(replies) == 3
            assert len([r for r in replies if MAXHOURS_RULE in r]) == 1, replies
    finally:
        for each in bots:
            await each.stop()

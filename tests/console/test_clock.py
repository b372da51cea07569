"""Long jumps of the console's clock (`:wait`, `:clock`; the rule is in bot/scheduler.py):
each periodic job runs only at those of its own times at which it has work, at the moment a
deployment would have acted, in the same order; the result is the same as walking every
time of every job. The clock starts at 2026-02-10 09:00 (Asia/Shanghai); the five-minute
jobs' times are 09:05, 09:10, …, the ten-minute job's 09:10, 09:20, …, the hourly 10:00, …"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest_asyncio
from sqlalchemy import select

from storage import models
from tests.harness import ConsoleBot, setup_community

SHANGHAI = ZoneInfo("Asia/Shanghai")


def recorded_runs(bot: ConsoleBot) -> list[tuple[str, str]]:
    """From now on, each job run of the bot as (job, local time `MM-DD HH:MM`)."""
    app = bot.app
    runs: list[tuple[str, str]] = []
    run_job = app._run_job

    async def recording(name, function) -> None:
        runs.append((name, app.clock.now().astimezone(SHANGHAI).strftime("%m-%d %H:%M")))
        await run_job(name, function)

    app._run_job = recording  # what App.run_job calls for every job, daily digests included
    return runs


async def busy_community(bot: ConsoleBot, shift: str) -> None:
    """Work for every timed job: a claimed errand, a shift with one of two slots taken, a
    watched key person whose observation ends tomorrow, a released one whose details are
    kept one day."""
    await setup_community(bot)
    await bot.say(
        ":as lead", ":in g1chat", "/post add 卡口 北门", f"/shift add 卡口 {shift} slots=2",
        ":as wang", "/signup S1",
        ":as zhang Zhang San", "/errand 买菜和鸡蛋 for=3-1-101", ":as li", "/claim E1",
        ":as wang", "/watch add 3-1-102 张三 close-contact until=2026-02-11",
        "/watch add 3-2-601 李四 fever", ":as lead", "/watch release K2",
        ":as admin", ":in hq", "/set keypersonretention 1d confirm",
    )


async def test_a_three_day_wait_runs_each_job_only_when_it_has_work_at_its_own_times(bot):
    await busy_community(bot, "tomorrow 08:00-12:00")
    runs = recorded_runs(bot)
    out = await bot.say(":wait 3d")
    assert runs == [
        ("sync_schedules", "02-10 09:05"),  # follows other instances' settings: once a jump
        ("sweep_claims", "02-10 12:00"),  # E1 claimed at 09:00, window 3 h: reminded
        ("sweep_claims", "02-10 15:00"),  # twice the window: reopened
        ("send_due", "02-10 20:00"),  # each evening's digest at its hour
        ("shift_clock", "02-11 07:00"),  # an hour before S1: wang reminded
        ("shift_clock", "02-11 08:00"),  # S1 starts with a slot empty: the leader told
        ("retention", "02-11 09:00"),  # K2 released 09:00 yesterday, kept one day
        ("sweep_key_persons", "02-11 09:05"),  # K1 overdue after 24 h: wang reminded
        ("shift_clock", "02-11 12:00"),  # S1 over: hours credited
        # Asked after duty at the ten-minute job's first time after the credit: its 12:00
        # came before the shift clock's (job id order), when there was nothing to ask.
        ("ask_after_duty", "02-11 12:10"),
        ("send_due", "02-11 20:00"),
        ("sweep_key_persons", "02-12 00:00"),  # K1's last day (02-11) is over: ended
        ("send_due", "02-12 20:00"),
        ("retention", "02-13 00:00"),  # K1 ended a day ago: its details removed
    ]
    assert bot.app.clock.now() == datetime(2026, 2, 13, 9, 0, tzinfo=SHANGHAI)
    async with bot.app.db.transaction() as db:
        errand = await db.scalar(select(models.Errand))
        shift = await db.scalar(select(models.Shift))
        k1, k2 = (await db.scalars(select(models.KeyPerson).order_by(models.KeyPerson.number)))
        asked = await db.scalar(select(models.WelfareAsk))
    local = {
        "shift reminded": shift.reminded_at,
        "shift started": shift.started_alerted_at, "shift credited": shift.credited_at,
        "K1 reminded": k1.last_reminded_at, "K1 ended": k1.ended_at,
        "K1 anonymised": k1.anonymised_at, "K2 anonymised": k2.anonymised_at,
        "asked": asked.at,
    }
    assert {k: v.astimezone(SHANGHAI).strftime("%m-%d %H:%M") for k, v in local.items()} == {
        "shift reminded": "02-11 07:00",
        "shift started": "02-11 08:00", "shift credited": "02-11 12:00",
        "K1 reminded": "02-11 09:05", "K1 ended": "02-12 00:00",
        "K1 anonymised": "02-13 00:00", "K2 anonymised": "02-11 09:00",
    } | {"asked": "02-11 12:10"}
    assert errand.state == "open" and (k1.name, k2.name) == (None, None)
    # What was said, in the order a deployment says it.
    assert out.chats() == [
        "dm:li", "g1chat", "dm:li",  # E1: reminder; reopened and announced, li told
        "hq", "g1chat", "g2chat",  # the digest, 02-10
        "dm:wang", "dm:lead", "dm:wang", "dm:wang",  # S1 reminder, S1 short, K1, welfare
        "hq", "g1chat", "g2chat",  # the digest, 02-11
        "dm:wang",  # K1's observation over
        "hq", "g1chat", "g2chat",  # the digest, 02-12
    ]
    said = [text.split("\n")[0] for text in out.texts("dm:wang")]
    assert ["S1" in said[0] and "1小时后开始" in said[0], "K1" in said[1] and "随访" in said[1],
            "S1" in said[2] and "已结束" in said[2], "K1" in said[3] and "观察期" in said[3]] \
        == [True] * 4
    assert "02-10 15:00 前" in out.texts("dm:li")[0]  # reminded at 12:00, three hours left

    # After the jump each job keeps its own times: the next hour's retention, digest at 20:00.
    runs.clear()
    await bot.say(":clock 2026-02-13T20:00")
    assert runs == [("sync_schedules", "02-13 09:05"), ("send_due", "02-13 20:00")]


async def test_going_back_in_time_runs_nothing_and_a_bad_wait_is_refused(bot, capsys):
    await busy_community(bot, "tomorrow 08:00-12:00")
    runs = recorded_runs(bot)
    await bot.say(":clock 2026-02-09T09:00")
    assert runs == []
    await bot.say(":wait soon", ":wait 0m")
    assert runs == [] and capsys.readouterr().err.count("bad directive :wait") == 2
    assert bot.app.clock.now() == datetime(2026, 2, 9, 9, 0, tzinfo=SHANGHAI)


@pytest_asyncio.fixture
async def every_time(tmp_path):
    """A second bot on its own database whose jumps run every job at every one of its times
    (as a deployment does), to compare with."""
    other = ConsoleBot(tmp_path / "every-time")
    (tmp_path / "every-time").mkdir()
    await other.start()
    other.app.scheduler.skip_idle = False
    yield other
    await other.stop()


async def stamps(bot: ConsoleBot) -> dict[str, list]:
    """Every timestamp and outcome the jobs write (their audit entries too), and every
    message queued."""
    tables = {
        "errands": (models.Errand, ("number", "state", "claimed_at", "reminded_at")),
        "shifts": (models.Shift, ("number", "reminded_at", "started_alerted_at",
                                  "credited_at")),
        "key persons": (models.KeyPerson, ("number", "name", "ended_at", "last_reminded_at",
                                           "anonymised_at")),
        "asks": (models.WelfareAsk, ("shift_id", "person_id", "at")),
        "digests": (models.DigestSent, ("community_id", "day", "sent_at")),
        "audit": (models.AuditEntry, ("at", "command", "changes")),
        "outbox": (models.OutboxMessage, ("chat", "person_id", "text", "created_at", "sent_at")),
    }
    async with bot.app.db.transaction() as db:
        found = {
            name: [tuple(getattr(row, c) for c in columns)
                   for row in await db.scalars(
                       select(model).order_by(*model.__table__.primary_key.columns))]
            for name, (model, columns) in tables.items()
        }
    # The jobs' own entries (the order of a command's changes within its entry may vary).
    found["audit"] = [entry for entry in found["audit"] if entry[1].startswith("job:")]
    assert found["audit"]
    return found


async def test_a_jump_does_what_walking_every_time_of_every_job_does(bot, every_time):
    # One day's worth of work (a shift today, check-ins due every two hours), within a
    # jump short enough for the walk through every time to be quick.
    for each in (bot, every_time):
        await busy_community(each, "today 11:00-13:00")
        await each.say(":as admin", ":in hq", "/set followup 2h")
    skipping, walking = recorded_runs(bot), recorded_runs(every_time)
    jumped = await bot.say(":wait 11h", ":clock 2026-02-10T21:30")
    walked = await every_time.say(":wait 11h", ":clock 2026-02-10T21:30")
    assert jumped == walked and len(jumped) > 10
    assert await stamps(bot) == await stamps(every_time)
    assert len(walking) > 10 * len(skipping)  # the walk's runs at times with nothing to do
    assert set(skipping) < set(walking)  # each run at one of the job's own times

"""Retention of residents' health data (and of welfare notes), and /forget: names, reasons,
temperatures, symptoms and notes leave the database (the records, the audit log's copies,
the stored messages) once the clock passes the community's limits, while IDs, households,
dates, scores and counts stay.

The first test lets four weeks go by with the bot running (`:clock`), the others restart it
with its clock moved on (as after downtime): the retention job must catch up either way."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from commands import records
from storage import models

PRIVATE = ("张三", "38.4", "咳嗽", "close-contact", "乏力")


async def stored_text(bot) -> str:
    """Everything the database holds that could carry the values: the key persons, check-ins,
    screenings, audit log (changes and command lines) and outbox, as text."""
    async with bot.app.db.transaction() as db:
        parts = []
        for model in (models.KeyPerson, models.CheckIn, models.Screening):
            for row in (await db.scalars(select(model))).all():
                parts.append(json.dumps({c.key: str(getattr(row, c.key)) for c in
                                         model.__mapper__.column_attrs}, ensure_ascii=False))
        for entry in (await db.scalars(select(models.AuditEntry))).all():
            parts.append(entry.text)
            parts.append(json.dumps(entry.changes, ensure_ascii=False))
        for row in (await db.scalars(select(models.OutboxMessage))).all():
            parts.append(row.text)
        return "\n".join(parts)


async def count(bot, model) -> int:
    async with bot.app.db.transaction() as db:
        return await db.scalar(select(func.count()).select_from(model))


async def key_person(bot) -> models.KeyPerson:
    async with bot.app.db.transaction() as db:
        return await db.scalar(select(models.KeyPerson).where(models.KeyPerson.number == 1))


async def observe_and_release(bot) -> None:
    """K1 registered with its name in the grid chat (the typed line carries it), two
    check-ins (one an alert by direct message), released at 09:03."""
    await bot.say(":as wang", ":in g1chat", "/watch add 3-1-102 张三 close-contact")
    await bot.say(":wait 1m", "/checkin K1 38.4 咳嗽")
    await bot.say(":wait 1m", ":dm", "/checkin K1 36.6 乏力")
    await bot.say(":wait 1m", ":as lead", ":in g1chat", "/watch release K1")


async def test_a_key_persons_health_data_goes_28_days_after_observation_ended(community):
    bot = community
    await observe_and_release(bot)
    text = await stored_text(bot)
    assert all(word in text for word in PRIVATE)  # before: everywhere
    history = (await bot.say(":as admin", ":in hq", "/history K1")).text()
    coverage = (await bot.say(":as lead", ":in g1chat", "/coverage")).text()
    counts = [await count(bot, model) for model in (models.KeyPerson, models.CheckIn)]

    # Four weeks go by with the bot running (its hourly job on the hour): at 09:00 on the
    # 28th day, not yet.
    await bot.say(":clock 2026-03-10T09:00")
    assert (await key_person(bot)).name == "张三"

    await bot.say(":wait 1h")  # past 09:03 + 28 days: the job's run at 10:00 removed it
    kp = await key_person(bot)
    assert kp.anonymised_at == datetime(2026, 3, 10, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert (kp.name, kp.reason) == (None, None) and kp.anonymised_at is not None
    text = await stored_text(bot)
    for word in PRIVATE:
        assert word not in text, word
    async with bot.app.db.transaction() as db:
        checkins = (await db.scalars(select(models.CheckIn).order_by(models.CheckIn.id))).all()
    assert [(c.temperature, c.symptoms, c.alert) for c in checkins] == [
        (None, "", True), (None, "", True)
    ]
    # IDs, households, dates and counts stay.
    assert (kp.number, kp.started_at is not None, kp.ended_at is not None) == (1, True, True)
    assert [await count(bot, model) for model in (models.KeyPerson, models.CheckIn)] == counts
    assert (await bot.say(":as admin", ":in hq", "/history K1")).text() == history
    assert (await bot.say(":as lead", ":in g1chat", "/coverage")).text() == coverage
    async with bot.app.db.transaction() as db:
        watch_add = await db.scalar(
            select(models.AuditEntry).where(models.AuditEntry.command == "watch add"))
    assert watch_add.text == "/watch add" and watch_add.refs == ["K1"]

    # Nothing more happens on later runs.
    await bot.say(":wait 2h")
    assert (await key_person(bot)).anonymised_at == kp.anonymised_at


async def test_an_active_key_person_is_kept(community):
    bot = community
    await bot.say(":as wang", ":in g1chat", "/watch add 3-1-102 张三 close-contact",
                  "/checkin K1 38.4 咳嗽")
    await bot.restart("2026-04-10T09:00")
    await bot.say(":wait 2h")
    assert (await key_person(bot)).name == "张三"


async def test_screenings_lose_temperature_and_note_after_the_retention(community):
    bot = community
    await bot.say(":as wang", ":in g1chat", "/screen 3-1-101 fever temp=38.4 咳嗽",
                  "/screen 3-1-102 ok people=3 乏力")
    coverage = (await bot.say("/coverage")).text()
    assert "2/24" in coverage
    await bot.restart("2026-05-11T08:30")  # 90 days after 09:00 is 05-11 09:00
    await bot.say(":wait 20m")
    async with bot.app.db.transaction() as db:
        assert await db.scalar(select(func.count()).select_from(models.Screening)
                               .where(models.Screening.temperature.is_not(None))) == 1
    await bot.say(":wait 1h")
    async with bot.app.db.transaction() as db:
        rows = (await db.scalars(select(models.Screening).order_by(models.Screening.id))).all()
    assert [(s.status, s.people, s.temperature, s.note) for s in rows] == [
        ("fever", None, None, ""), ("ok", 3, None, "")
    ]
    text = await stored_text(bot)
    for word in ("38.4", "咳嗽", "乏力"):
        assert word not in text, word
    assert (await bot.say(":as wang", ":in g1chat", "/coverage")).text() == coverage


async def test_a_backlog_of_screenings_is_cleared_a_batch_per_run(community, monkeypatch):
    monkeypatch.setattr(records, "RETENTION_BATCH", 1)
    bot = community
    await bot.say(":as wang", ":in g1chat", "/screen 3-1-101 fever temp=38.4",
                  ":wait 1m", "/screen 3-1-102 fever temp=38.5")

    async def temperatures() -> list[float | None]:
        async with bot.app.db.transaction() as db:
            return list((await db.scalars(
                select(models.Screening.temperature).order_by(models.Screening.id))).all())

    await bot.restart("2026-06-01T09:00")
    await bot.say(":wait 1h")
    assert await temperatures() == [None, 38.5]  # the oldest first
    await bot.say(":wait 1h")
    assert await temperatures() == [None, None]


async def test_a_shorter_retention_is_confirmed_first_then_applies(community):
    bot = community
    await bot.say(":as wang", ":in g1chat", "/screen 3-1-101 fever temp=38.4 咳嗽")
    out = await bot.say(":as admin", ":in hq", "/set retention 30d")
    assert "将从 90 天缩短为 30 天" in out.text() and "/set retention 30d confirm" in out.text()
    async with bot.app.db.transaction() as db:
        assert (await db.scalar(select(models.Community))).retention_days == 90
    out = await bot.say("/set retention 30d confirm")
    assert "排查记录保留 30 天" in out.text()
    out = await bot.say("/set keypersonretention 60d")  # longer: no question
    assert "观察结束 60 天后删除" in out.text()
    out = await bot.say("/set keypersonretention 400d")
    assert "超出范围（1d–365d）" in out.text()
    out = await bot.say(":as wang", ":in g1chat", "/set retention 7d")
    assert "需要「社区书记」" in out.text()

    await bot.restart("2026-03-12T09:00")
    await bot.say(":wait 1h")
    assert "38.4" not in await stored_text(bot)


async def test_forget_removes_a_key_persons_data_at_once(community):
    bot = community
    await observe_and_release(bot)
    history = (await bot.say(":as admin", ":in hq", "/history K1")).text()

    out = await bot.say(":as wang", ":in g1chat", "/forget K1")
    assert "/forget 需要「社区书记」" in out.text()
    out = await bot.say(":as admin", ":in hq", "/forget K1")
    assert "/forget K1 confirm" in out.text()  # asked first: it cannot be taken back
    assert (await key_person(bot)).name == "张三"

    out = await bot.say("/forget K1 confirm")
    assert "已删除 K1 的个人信息" in out.text() and "2 次随访" in out.text()
    assert "观察同时结束" not in out.text()  # it had ended already
    kp = await key_person(bot)
    assert (kp.name, kp.reason) == (None, None) and kp.anonymised_at is not None
    text = await stored_text(bot)
    for word in PRIVATE:
        assert word not in text, word
    after = (await bot.say("/history K1")).text()
    assert after.startswith(history) and after.endswith("/forget")  # one more line: the forget

    out = await bot.say("/forget K1 confirm")
    assert "已经删除过了" in out.text()
    out = await bot.say("/undo")
    assert "/forget K1 不能撤回" in out.text()


async def test_forget_ends_an_active_observation(community):
    bot = community
    await bot.say(":as wang", ":in g1chat", "/watch add 3-1-102 张三 close-contact")
    out = await bot.say(":as admin", ":in hq", "/forget K1 confirm")
    assert "K1 的观察同时结束" in out.text()
    out = await bot.say(":as wang", ":in g1chat", "/checkin K1 36.5")
    assert "K1 已于 02-10 09:00 解除观察" in out.text()
    assert "张三" not in await stored_text(bot)


async def welfare_text(bot) -> str:
    """Everything stored that could carry a welfare note: the check-ins, the audit log
    (changes and command lines) and the outbox, as text."""
    async with bot.app.db.transaction() as db:
        parts = [check.note for check in (await db.scalars(select(models.WelfareCheck))).all()]
        for entry in (await db.scalars(select(models.AuditEntry))).all():
            parts.append(entry.text)
            parts.append(json.dumps(entry.changes, ensure_ascii=False))
        parts.extend(row.text for row in (await db.scalars(select(models.OutboxMessage))).all())
        return "\n".join(parts)


async def welfare_checks(bot) -> list[tuple[int, str, bool]]:
    async with bot.app.db.transaction() as db:
        rows = (await db.scalars(select(models.WelfareCheck).order_by(models.WelfareCheck.id)))
        return [(c.score, c.note, c.shared_at is not None) for c in rows.all()]


async def test_welfare_notes_go_after_the_retention_period_and_scores_stay(community):
    bot = community
    await bot.say(":as wang", ":dm", "/welfare 2 腰疼得厉害", "/welfare share",
                  ":wait 1d", ":as li", ":dm", "/welfare 4 连续三个夜班", "/welfare 5")
    assert await welfare_checks(bot) == [
        (2, "腰疼得厉害", True), (4, "连续三个夜班", False), (5, "", False)]
    text = await welfare_text(bot)
    assert "腰疼得厉害" in text and "连续三个夜班" in text  # before: the rows and the audit log

    # Past the key persons' 28 days, but welfare notes keep the community's retention (90 d).
    await bot.restart("2026-03-20T09:00")
    await bot.say(":wait 2h")
    assert "腰疼得厉害" in await welfare_text(bot)

    await bot.restart("2026-05-11T08:30")  # 90 days after 02-10 09:00 is 05-11 09:00
    await bot.say(":wait 20m")
    assert (await welfare_checks(bot))[0][1] == "腰疼得厉害"
    await bot.say(":wait 1h")
    assert await welfare_checks(bot) == [
        (2, "", True), (4, "连续三个夜班", False), (5, "", False)]
    text = await welfare_text(bot)
    assert "腰疼得厉害" not in text and "连续三个夜班" in text  # li's is a day younger
    async with bot.app.db.transaction() as db:
        first = await db.scalar(select(models.AuditEntry).where(
            models.AuditEntry.command == "welfare").order_by(models.AuditEntry.id))
    assert first.text == "/welfare"
    assert [c["after"].get("score") for c in first.changes] == [2]

    await bot.say(":wait 1d")
    assert [(score, note) for score, note, _ in await welfare_checks(bot)] == [
        (2, ""), (4, ""), (5, "")]
    assert "连续三个夜班" not in await welfare_text(bot)
    # The setting says what it covers.
    out = await bot.say(":as admin", ":in hq", "/set retention 30d confirm")
    assert "排查记录保留 30 天（关怀留言同此期限）" in out.text()


async def test_a_shorter_retention_clears_welfare_notes_too(community):
    bot = community
    await bot.say(":as wang", ":dm", "/welfare 3 家里老人没人照顾")
    out = await bot.say(":as admin", ":in hq", "/set retention 30d")
    assert "关怀登记的留言" in out.text()  # the question says what will go
    await bot.say("/set retention 30d confirm")
    await bot.restart("2026-03-12T09:00")
    await bot.say(":wait 1h")
    assert await welfare_checks(bot) == [(3, "", False)]
    assert "家里老人没人照顾" not in await welfare_text(bot)

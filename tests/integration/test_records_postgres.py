"""/undo, retention and /export on a real PostgreSQL: the audit log's JSON is matched as
text there too, rows are locked while an undo reverses them, and the bulk removals run."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from storage import models
from tests.harness import ConsoleBot, setup_community


async def test_undo_retention_and_export_on_postgresql(tmp_path, postgres_url):
    bot = ConsoleBot(tmp_path, database_url=postgres_url)
    await bot.start()
    try:
        await setup_community(bot)
        await bot.say(":wait 11m", ":as zhang Zhang", ":in g1chat", "/errand 买菜")
        await bot.say(":as wang", "/claim E1")
        out = await bot.say(":as zhang", "/undo")
        assert "不能撤回 E1 的 /errand：之后 @wang 已经 /claim" in out.text()
        out = await bot.say(":as lead", "/undo E1")
        assert "E1 撤回：恢复为待认领" in out.text()

        await bot.say(":as wang", "/watch add 3-1-102 张三 close-contact", "/checkin K1 38.4 咳嗽",
                      ":as lead", "/watch release K1")
        out = await bot.say(":as admin", ":in hq", "/export keypersons")
        [sent] = [b for b in out if b.file]
        rows = list(csv.reader(io.StringIO((tmp_path / sent.file).read_text("utf-8-sig"))))
        assert rows[1][:5] == ["K1", "g1", "3-1-102", "张三", "密切接触者"]

        await bot.restart("2026-03-10T10:00")
        await bot.say(":wait 1h")
        async with bot.app.db.transaction() as db:
            kp = await db.scalar(select(models.KeyPerson))
            temperatures = (await db.scalars(select(models.CheckIn.temperature))).all()
            texts = [e.text for e in (await db.scalars(select(models.AuditEntry))).all()]
            sent_texts = (await db.scalars(select(models.OutboxMessage.text))).all()
        assert (kp.name, kp.reason, temperatures) == (None, None, [None])
        assert not any("张三" in t for t in texts + list(sent_texts))
        assert not any("38.4" in t for t in sent_texts)
    finally:
        await bot.stop()

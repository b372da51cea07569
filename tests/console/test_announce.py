"""/announce: the secretary sees a preview, then posts to every grid chat of the community."""

from __future__ import annotations

from sqlalchemy import select

from storage import models


async def announcements(bot) -> list[str]:
    async with bot.app.db.transaction() as db:
        return list(await db.scalars(select(models.Announcement.text).order_by(models.Announcement.id)))


async def test_the_sender_sees_a_preview_and_nothing_is_sent_yet(community):
    out = await community.say(":as admin", ":in hq", "/announce 今晚 8 点起暂停聚集，请大家互相转告")
    assert out.chats() == ["hq"]
    [preview] = out.texts("hq")
    assert "公告预览（尚未发送）" in preview
    assert "📢 阳光社区 公告\n今晚 8 点起暂停聚集，请大家互相转告" in preview
    assert "2 个网格群（g1、g2）" in preview
    # The confirm button (a hint on the console) sends exactly this.
    assert "[发送公告: /announce 今晚 8 点起暂停聚集，请大家互相转告 confirm]" in preview
    assert await announcements(community) == []


async def test_confirmed_announcement_reaches_every_grid_chat_pinned(community):
    await community.say(":as admin", ":in hq", "/announce 今晚 8 点起暂停聚集，请大家互相转告")
    out = await community.say("/announce 今晚 8 点起暂停聚集，请大家互相转告 confirm")
    assert out.texts("g1chat") == ["📢 阳光社区 公告\n今晚 8 点起暂停聚集，请大家互相转告"]
    assert out.texts("g2chat") == out.texts("g1chat")
    [reply] = out.texts("hq")
    assert "2 个网格群" in reply and "g1、g2" in reply and "未送达" not in reply
    assert await announcements(community) == ["今晚 8 点起暂停聚集，请大家互相转告"]
    async with community.app.db.transaction() as db:
        pinned = await db.scalars(select(models.OutboxMessage.chat).where(models.OutboxMessage.pin.is_(True)))
        assert sorted(pinned) == ["g1chat", "g2chat"]


async def test_a_multi_line_announcement_is_sent_as_previewed(community):
    text = "通知：\n1. 明早 7 点核酸\n2. 带好身份证"
    out = await community.say(":as admin", ":in hq", "/announce " + text)
    assert "📢 阳光社区 公告\n" + text in out.text("hq")
    out = await community.say("/announce " + text + " 确认")
    assert out.texts("g1chat") == ["📢 阳光社区 公告\n" + text]
    assert await announcements(community) == [text]


async def test_grids_without_a_linked_chat_are_named_in_the_preview_and_the_report(community):
    await community.say(":as admin", ":in hq", "/grid add g3 三网格")
    out = await community.say("/announce 明早 7 点核酸检测")
    assert "收不到：g3 三网格（还没有绑定群聊）" in out.text("hq")
    out = await community.say("/announce 明早 7 点核酸检测 confirm")
    assert sorted(out.chats()) == ["g1chat", "g2chat", "hq"]
    report = out.text("hq")
    assert "2 个网格群（g1、g2）" in report
    assert "未送达：g3 三网格 还没有绑定群聊" in report


async def test_announcement_counts_every_linked_chat_of_a_grid(community):
    await community.say(":as admin", ":in g1extra", "/grid link g1")
    out = await community.say(":in hq", "/announce 明早 7 点核酸检测 confirm")
    assert sorted(out.chats()) == ["g1chat", "g1extra", "g2chat", "hq"]
    assert "3 个网格群" in out.text("hq")


async def test_announcement_in_english(community):
    await community.say(":as admin", ":in hq", "/set lang en", "/grid add g3 Grid three")
    out = await community.say("/announce No visits between households")
    preview = out.text("hq")
    assert "Announcement preview (not sent yet)" in preview
    assert "Not reached: g3 Grid three (no linked chat yet)." in preview
    out = await community.say("/announce No visits between households confirm")
    assert out.texts("g1chat") == ["📢 Announcement from 阳光社区\nNo visits between households"]
    assert "2 grid chats (g1, g2)" in out.text("hq")
    assert "Not reached: g3 Grid three has no linked chat yet" in out.text("hq")


async def test_announce_without_text_shows_the_usage_and_no_preview(community):
    for typed in ("/announce", "/announce confirm"):
        out = await community.say(":as admin", ":in hq", typed)
        [reply] = out.texts("hq")
        assert "用法：\n/announce <text…>" in reply and "预览" not in reply
        assert out.chats() == ["hq"]
    assert await announcements(community) == []


async def test_announce_with_no_grid_chat_linked_is_refused(bot):
    out = await bot.say(":as admin", ":in hq", "/community 新社区", "/grid add g1 一网格", "/announce 通知")
    assert "还没有绑定到网格的群聊" in out.texts("hq")[-1]
    out = await bot.say("/announce 通知 confirm")
    assert "还没有绑定到网格的群聊" in out.texts("hq")[-1]
    assert await announcements(bot) == []


async def test_announce_is_refused_to_others_and_outside_the_hq_chat(community):
    out = await community.say(":as lead", ":in hq", "/announce 通知")
    assert out.texts() == ["/announce 需要「社区书记」或以上角色。"]
    out = await community.say(":as lead", ":in hq", "/announce 通知 confirm")
    assert out.texts() == ["/announce 需要「社区书记」或以上角色。"]
    out = await community.say(":as admin", ":in g1chat", "/announce 通知")
    assert out.texts() == ["/announce 请在社区指挥部群中使用。"]
    assert await announcements(community) == []

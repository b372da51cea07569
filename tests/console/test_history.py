"""/history: the audit trail of one item."""

from __future__ import annotations


async def test_history_of_an_errand_shows_who_did_what_including_automatic_steps(community):
    await community.say(":as li", ":in g1chat", "/errand 买菜", ":as wang", "/claim E1", ":wait 7h",
                        "/claim E1", "/done E1 送到了")
    out = await community.say("/history E1")
    lines = out.text("g1chat").splitlines()
    assert lines[0] == "E1 的记录（最近 20 条）："
    steps = [line.split(" ", 2)[2] for line in lines[1:]]
    assert steps == [
        "@li /errand · 新建 → 待认领",
        "@wang /claim · 待认领 → 已认领",
        "系统 自动处理",  # the reminder
        "系统 自动处理 · 已认领 → 待认领",
        "@wang /claim · 待认领 → 已认领",
        "@wang /done · 已认领 → 已完成",
    ]


async def test_history_of_a_key_person_in_a_group_names_nobody(community):
    await community.say(":as wang", ":in g1chat", "/watch add 3-1-101 张三 home-observation",
                        "/checkin K1 36.6 ok")
    out = await community.say("/history K1")
    text = out.text("g1chat")
    assert "/watch add" in text and "张三" not in text and "36.6" not in text


async def test_history_bad_input_and_refusal(community):
    out = await community.say(":as wang", ":in g1chat", "/history X1")
    assert "不是编号" in out.text() and "/history <E|S|K|N>" in out.text()
    out = await community.say("/history E9")
    assert "没有 E9" in out.text()
    out = await community.say(":as stranger", "/history E1")
    assert "需要先报到成为网格员" in out.text()


async def test_history_on_postgresql(tmp_path, postgres_url):
    from tests.harness import ConsoleBot, setup_community

    bot = ConsoleBot(tmp_path, database_url=postgres_url)
    await bot.start()
    try:
        await setup_community(bot)
        await bot.say(":as li", ":in g1chat", "/errand 买菜", ":as wang", "/claim E1")
        out = await bot.say("/history E1")
        assert "@wang /claim · 待认领 → 已认领" in out.text("g1chat")
    finally:
        await bot.stop()

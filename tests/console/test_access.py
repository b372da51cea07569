"""One access rule (bot/access.py): /help lists exactly what running would not refuse;
refusals say what to do; roles can be taken away; linked chats are not taken over; a person
in two communities is asked which; check-in words; one command lookup."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from bot.registry import REGISTRY
from storage import models

SEATS = ("admin", "lead", "wang", "res")
CHATS = (":in g1chat", ":in hq", ":dm", ":in newchat")
REFUSALS = ("需要「", "请在", "需要先报到", "多个社区", "还没有所属社区")


def listed(help_text: str) -> set[str]:
    """The command names /help lists (its usage lines start with `/`)."""
    names = set()
    for line in help_text.splitlines():
        if line.startswith("/") and not line.startswith("/help <"):
            words = line[1:].split()
            sub = words[1] if len(words) > 1 and not words[1].startswith(("<", "[", "@")) else ""
            names.add(f"{words[0]} {sub}".strip())
    return names


async def test_help_lists_exactly_what_running_does_not_refuse(community, monkeypatch):
    bot = community
    ran: list[str] = []

    # Every command's body is replaced: only the pipeline's own decision is looked at, and
    # nothing a command would change disturbs the next row of the table.
    typed = {}
    for cmd in REGISTRY.commands():
        if cmd.name in ("help", "start"):
            continue

        async def stub(ctx, *args, _name=cmd.name, **kwargs):
            ran.append(_name)
            ctx.reply("core/confirm_button")

        monkeypatch.setattr(cmd, "function", stub)
        if cmd.role_grid is None:  # no arguments to read; a command naming its grid gets g1
            monkeypatch.setattr(cmd, "signature", type(cmd.signature)())
        typed[cmd.name] = f"/{cmd.name}" + (" g1" if cmd.role_grid else "") + (
            " confirm" if cmd.confirm else ""
        )
    for who in SEATS:
        for chat in CHATS:
            out = await bot.say(f":as {who}", chat, "/help")
            shown = listed(out.text())
            for name, line in typed.items():
                ran.clear()
                out = await bot.say(line)
                refused = name not in ran
                if refused:
                    assert any(r in out.text() for r in REFUSALS), (who, chat, line, out.text())
                assert (name in shown) == (not refused), (who, chat, name, out.text())


async def test_refusals_say_where_and_what_to_do(community):
    bot = community
    out = await bot.say(":as wang", ":in hq", "/screen 3-1-101 ok")
    assert "请在你所在网格的群聊中使用" in out.text() and "/grid link" not in out.text()
    out = await bot.say(":dm", "/screen 3-1-101 ok")
    assert "请在你所在网格的群聊中使用" in out.text()
    out = await bot.say(":as res", ":in g1chat", "/screen 3-1-101 ok")
    assert "/join" in out.text()
    out = await bot.say(":as lead", ":in newchat", "/screen 3-1-101 ok")
    assert "/grid link" in out.text()  # a leader in a chat not linked yet
    out = await bot.say(":as nobody", ":dm", "/watch")
    assert "/join" in out.text()  # in no community yet
    out = await bot.say(":as wang", ":in g1chat", "/announce 通知")
    assert "请在社区指挥部群中使用" in out.text()


async def test_one_lookup_for_case_aliases_and_suggestions(community):
    bot = community
    out = await bot.say(":as lead", ":in g1chat", "/HOUSEHOLD add 9-1-101")
    assert "9-1-101" in out.text() and "没有" not in out.text()
    out = await bot.say("/Household ADD 9-1-102")
    assert "9-1-102" in out.text()
    out = await bot.say("/GRID LIST")
    assert "g1" in out.text()
    out = await bot.say("/undo")
    assert "/round" not in out.text()  # nothing spelt alike
    out = await bot.say("/houshold add 9-1-103")
    assert "/household" in out.text()


async def test_secretary_removed_in_hq_not_the_last_nor_an_admin(community):
    bot = community
    out = await bot.say(":as admin", ":in hq", "/role @sec secretary", "/role @admin none")
    assert "配置" in out.text()  # an installation admin's role is not taken away in chat
    out = await bot.say(":as sec", "/role @admin none")
    assert "配置" in out.text()
    out = await bot.say(":as admin", "/role @sec none")
    assert "已撤销 @sec" in out.text()
    out = await bot.say(":as sec", ":in hq", "/grid add g9 九网格")
    assert "需要「社区书记」" in out.text()
    async with bot.app.db.transaction() as db:
        roles = (await db.scalars(select(models.Membership.role).join(
            models.Person, models.Person.id == models.Membership.person_id
        ).where(models.Person.external_id == "sec"))).all()
    assert roles == []


async def test_the_last_secretary_stays(bot):
    # A community whose only secretary is not an installation admin.
    await bot.say(":as admin", ":in hq", "/community 阳光社区", "/role @boss secretary")
    async with bot.app.db.transaction() as db:
        admin = await db.scalar(select(models.Person).where(models.Person.external_id == "admin"))
        await db.execute(delete(models.Membership).where(models.Membership.person_id == admin.id))
    out = await bot.say(":as boss", "/role @boss none")
    assert "不能撤销自己" in out.text()
    out = await bot.say(":as admin", "/role @boss none")
    assert "唯一的书记" in out.text()
    await bot.say(":as admin", "/role @deputy secretary")
    out = await bot.say(":as deputy", "/role @boss none")
    assert "已撤销 @boss" in out.text()
    out = await bot.say(":as admin", "/role @deputy none")
    assert "唯一的书记" in out.text()


async def test_a_linked_chat_is_not_taken_over(community):
    bot = community
    await bot.say(":as admin", ":in g2chat", "/role @zhou leader")
    out = await bot.say(":as zhou", ":in g1chat", "/grid link g2")
    assert "需要「社区书记」" in out.text()
    out = await bot.say(":as wang", "/screen 3-1-101 ok")  # still g1's chat
    assert "3-1-101 已排查" in out.text()
    out = await bot.say(":as admin", ":in g1chat", "/grid link g2")
    assert "g1" in out.text() and "g2" in out.text() and "/grid link g2 confirm" in out.text()
    out = await bot.say(":as wang", "/screen 3-1-102 ok")
    assert "3-1-102 已排查" in out.text()  # not moved before the confirmation
    out = await bot.say(":as admin", "/grid link g2 confirm")
    assert "本群已绑定到「阳光社区」网格 g2" in out.text()


async def test_a_person_in_two_communities_is_asked_which(community):
    bot = community
    await bot.say(
        ":as admin", ":in hq2", "/community 幸福里", "/grid add x1 一网格",
        ":in x1chat", "/grid link x1", "/household add 1-1-101", "/role @wang leader",
        ":as wang", "/join",
        ":as wang", ":dm", "/watch add 1-1-101 王五 close-contact",
    )
    out = await bot.say(":as wang", ":dm", "/watch")
    assert "多个社区" in out.text() and "/use 阳光社区" in out.text() and "王五" not in out.text()
    out = await bot.say("/use 幸福")
    assert "幸福里" in out.text()
    out = await bot.say("/watch add 1-1-101 王五 close-contact", "/me")
    assert "K1" in out.text() and "幸福里" in out.text() and "阳光社区" in out.text()
    out = await bot.say("/use 不存在")
    assert "阳光社区" in out.text() and "幸福里" in out.text()
    async with bot.app.db.transaction() as db:
        numbers = (await db.execute(select(models.Community.name, models.KeyPerson.number).join(
            models.Community, models.Community.id == models.KeyPerson.community_id))).all()
    assert numbers == [("幸福里", 1)]


@pytest.mark.parametrize("words", ["没有症状", "无异常", "良好", "好", "normal", "-", "OK", "无 正常"])
async def test_everyday_ways_to_say_fine_raise_no_alert(community, words):
    bot = community
    await bot.say(":as wang", ":dm", "/watch add 3-1-102 张三 close-contact")
    out = await bot.say(f"/checkin K1 36.6 {words}")
    assert "已预警" not in out.text() and "无症状" in out.text()
    assert out.chats() == ["dm:wang"]


async def test_symptom_words_alert_and_unknown_words_are_kept_as_written(community):
    bot = community
    await bot.say(":as wang", ":dm", "/watch add 3-1-102 张三 close-contact")
    out = await bot.say("/checkin K1 36.6 咳嗽，乏力")
    assert "已预警" in out.text("dm:wang") and "咳嗽、乏力" in out.text("dm:lead")
    out = await bot.say("/checkin K1 36.6 cough")
    assert "咳嗽" in out.text("dm:lead")
    out = await bot.say("/checkin K1 36.6 眼睛红")
    assert "未识别的描述已按症状记录：眼睛红" in out.text("dm:wang")
    assert "眼睛红" in out.text("dm:lead")


async def test_history_stays_in_its_grid(community):
    bot = community
    await bot.say(":as li", ":in g1chat", "/errand 买菜")
    await bot.say(":as admin", ":in g2chat", "/role @zhou member")
    out = await bot.say(":as zhou", ":in g2chat", "/history E1")
    assert "另一个网格" in out.text() or "不属于" in out.text()
    out = await bot.say(":dm", "/history E1")
    assert "不属于" in out.text()
    out = await bot.say(":as wang", ":dm", "/history E1")
    assert "/errand" in out.text() or "E1" in out.text()
    out = await bot.say(":as admin", ":in hq", "/history E1")
    assert "不属于" not in out.text()

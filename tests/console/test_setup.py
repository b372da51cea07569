"""Setting up a community by chat, through the console transport: every setup command's
success, bad-input and refusal paths."""

from __future__ import annotations

from sqlalchemy import func, select

from storage import models
from tests.harness import setup_community


async def count(bot, model, *where) -> int:
    async with bot.app.db.transaction() as db:
        return await db.scalar(select(func.count()).select_from(model).where(*where))


async def test_newcomer_session_builds_community_with_two_grids_and_24_households(bot):
    out = await setup_community(bot)
    assert "阳光社区" in out.texts("hq")[0]
    assert "新增 24 户（3-1-101 … 3-2-602）" in out.text("g1chat")
    out = await bot.say(":in hq", "/grid list")
    listing = out.text("hq")
    assert "g1 一网格：住户 24，成员 3" in listing
    assert "g2 二网格：住户 0，成员 0" in listing
    assert await count(bot, models.Household) == 24


async def test_community_makes_chat_hq_and_caller_secretary(bot):
    out = await bot.say("/community 阳光社区")
    assert out.chats() == ["hq"]
    out = await bot.say("/community 又一个")
    assert "已经属于一个社区" in out.text("hq")
    async with bot.app.db.transaction() as db:
        membership = await db.scalar(select(models.Membership))
    assert membership.role == "secretary" and membership.grid_id is None


async def test_community_needs_a_name_and_an_admin(bot):
    out = await bot.say("/community")
    assert "用法：\n/community <name…>" in out.text("hq")
    out = await bot.say(":as bob Bob", "/community 阳光社区")
    assert "需要「管理员」" in out.text("hq")
    assert await count(bot, models.Community) == 0


async def test_grid_add_refuses_duplicates_bad_codes_and_non_secretaries(community):
    out = await community.say(":in hq", "/grid add g1 重复")
    assert "网格 g1 已存在" in out.text()
    out = await community.say("/grid add g!x 坏代码")
    assert "网格代码「…」无效" in out.text() and "g!x" not in out.text() and "/grid add <code> <name…>" in out.text()
    out = await community.say(":as lead", ":in g1chat", "/grid add g3 三网格")
    assert "需要「社区书记」" in out.text()
    assert await count(community, models.Grid) == 2


async def test_grid_link_by_leader_of_that_grid_only(community):
    out = await community.say(":as wang", ":in newchat", "/grid link g1")
    assert "需要「网格长」" in out.text("newchat")
    out = await community.say(":as lead", "/grid link g1")
    assert "本群已绑定" in out.text("newchat")
    out = await community.say(":as admin", ":in hq", "/grid link g2")
    assert "指挥部群不能绑定为网格群" in out.text("hq")
    out = await community.say(":in g1chat", "/grid link g9")
    assert "没有网格「…」。现有网格：g1、g2" in out.text()


async def test_household_add_by_code_pattern_and_chinese_form(community):
    out = await community.say(":in g2chat", "/household add 5栋1单元101室 5-1-102 5-1-101")
    assert "新增 2 户" in out.text()
    out = await community.say(":as lead", ":in g1chat", "/household add 5-1-101")
    assert "已登记在其他网格，未添加：5-1-101" in out.text()
    out = await community.say("/household add 7 units=1 floors=2")
    assert "units= floors= rooms=" in out.text()
    out = await community.say("/household add abc")
    assert "「ABC」不是户号" in out.text() or "不是户号" in out.text()
    out = await community.say(":as wang", "/household add 6-1-101")
    assert "需要「网格长」" in out.text()
    assert await count(community, models.Household, models.Household.code.like("6-%")) == 0


async def test_household_import_reads_a_csv_register(community, tmp_path):
    register = tmp_path / "register.csv"
    register.write_text("楼栋,单元,房号\n8,1,101\n8,1,102\nx,,\n8,2,201\n", encoding="utf-8")
    out = await community.say(":in g2chat", f":attach {register}", "/household import")
    text = out.text("g2chat")
    assert "新增 3 户" in text and "第 4 行" in text
    out = await community.say("/household import")
    assert "CSV" in out.text()
    codes = tmp_path / "codes.csv"
    codes.write_text("household\n9-1-101\n9栋1单元102室\n", encoding="utf-8")
    out = await community.say(f":attach {codes}", "/household import")
    assert "新增 2 户" in out.text()
    assert await count(community, models.Household, models.Household.code == "9-1-102") == 1


async def test_role_for_someone_not_yet_seen_applies_when_they_speak(community):
    await community.say(":in g2chat", "/role @zhao leader")
    out = await community.say(":as zhao Zhao", "/household add 10-1-101")
    assert "新增 1 户" in out.text("g2chat")


async def test_role_rules(community):
    out = await community.say(":as lead", ":in g1chat", "/role @li leader")
    assert "需要「社区书记」" in out.text()
    out = await community.say("/role @li member")
    assert "@li 现在是网格 g1 的网格员" in out.text()
    out = await community.say("/role @li boss")
    assert "「…」无效" in out.text()
    out = await community.say("/role li member")
    assert "不是 @用户" in out.text()
    out = await community.say(":as admin", ":in hq", "/role @wang leader")
    assert "网格角色" in out.text()
    out = await community.say("/role @wang secretary")
    assert "@wang 现在是「阳光社区」的社区书记" in out.text()
    out = await community.say(":as lead", ":in g1chat", "/role @wang none")
    assert "需要「社区书记」" not in out.text() and "已撤销 @wang 在网格 g1" in out.text()
    out = await community.say("/role @nobody none")
    assert "@nobody 在这里没有角色" in out.text()


async def test_set_changes_each_setting_and_rejects_bad_values(community):
    out = await community.say(":in hq", "/set digest 19:30", "/set tz Europe/Berlin", "/set followup 12h",
                              "/set claim 90m", "/set maxhours 8", "/set retention 30d confirm")
    assert len(out.texts("hq")) == 6
    async with community.app.db.transaction() as db:
        c = await db.scalar(select(models.Community))
    assert (c.digest_time, c.tz, c.followup_minutes, c.claim_minutes, c.max_hours, c.retention_days) == (
        "19:30", "Europe/Berlin", 720, 90, 8, 30)
    for bad, problem in [("/set digest 25:00", "时间「…」无效"), ("/set tz Mars/Base", "时区"),
                         ("/set followup soon", "时长"), ("/set maxhours 30", "1–24"),
                         ("/set colour red", "「…」无效"), ("/set lang fr", "「…」无效")]:
        out = await community.say(bad)
        assert problem in out.text(), bad
        assert ("/set <digest|tz|lang|followup|claim|maxhours|shiftremind|retention"
                "|keypersonretention> <value>") in out.text()
    out = await community.say(":as lead", ":in g1chat", "/set digest 18:00")
    assert "需要「社区书记」" in out.text()


async def test_language_switch_changes_replies(community):
    out = await community.say(":in hq", "/set lang en")
    assert "Updated the language" in out.text()
    out = await community.say("/grid list")
    assert "g1 一网格: 24 households, 3 members" in out.text()
    out = await community.say("/grid add g1 x")
    assert "Grid g1 already exists." in out.text()


async def test_join_kinds_party_and_unit(community):
    out = await community.say(":as zhou Zhou", ":in g1chat", "/join sanzhiyifu party unit=区卫健委 应急办")
    assert "三支一扶，党员，单位：区卫健委 应急办" in out.text()
    out = await community.say(":as qian Qian", "/join 物业")
    assert "物业人员" in out.text()
    out = await community.say(":as sun Sun", "/join party")
    assert "在职党员，党员" in out.text()
    out = await community.say("/join party")
    assert "已经是网格 g1 的成员" in out.text()
    out = await community.say("/join pilot")
    assert "「…」无效" in out.text() and "/join [cadre|" in out.text()
    out = await community.say(":in hq", "/join")
    assert "/join 请在你所在网格的群聊中使用" in out.text()


async def test_me_and_leave(community):
    out = await community.say(":as wang", ":in g1chat", "/me")
    assert "@wang：网格员，网格 g1「一网格」，社区工作者" in out.text()
    out = await community.say(":dm", "/me")
    assert out.chats() == ["dm:wang"]
    out = await community.say(":in g1chat", "/leave")
    assert "@wang 已退出网格 g1" in out.text()
    out = await community.say("/me")
    assert "需要先报到成为网格员" in out.text()
    out = await community.say("/leave")
    assert "需要先报到成为网格员" in out.text()


async def test_help_lists_only_what_the_caller_may_use(community):
    member_help = (await community.say(":as li", ":in g1chat", "/help")).text()
    assert "/join" in member_help and "/me" in member_help
    assert "/household add" not in member_help and "/set" not in member_help
    leader_help = (await community.say(":as lead", "/help")).text()
    assert "/household add" in leader_help and "/set" not in leader_help
    resident_help = (await community.say(":as stranger", "/help")).text()
    assert "/join" in resident_help and "/me" not in resident_help
    out = await community.say("/help household")
    assert "/household add <household…>" in out.text() and "/household import" in out.text()
    out = await community.say("/help nothing")
    assert "没有 /nothing 这个命令" in out.text()
    out = await community.say("/start")
    assert "gridbot" in out.text() and "网格 g1 一网格" in out.text()


async def test_unknown_commands_get_a_hint_and_plain_chat_is_ignored(community):
    out = await community.say(":in g1chat", "/jion")
    assert "没有 /jion 这个命令" in out.text() and "/join" in out.text()
    out = await community.say("大家好，今天辛苦了")
    assert out == []


async def test_overlong_and_control_characters_are_refused_politely(community):
    out = await community.say(":in g1chat", "/join " + "x" * 5000)
    assert "消息太长了" in out.text()
    out = await community.say("/join\x07 worker")
    assert "控制字符" in out.text()


async def test_chinese_aliases(community):
    out = await community.say(":as zhou Zhou", ":in g1chat", "/报到 志愿者")
    assert "欢迎 @zhou" in out.text()
    out = await community.say("/帮助")
    assert "/join" in out.text()


async def test_subcommand_group_without_subcommand_shows_usages(community):
    out = await community.say(":as lead", ":in g1chat", "/household")
    assert "/household add" in out.text() and "/household import" in out.text()
    out = await community.say("/household remove 3-1-101")
    assert "「…」不是这个命令的子命令" in out.text()


async def test_every_write_is_audited(community):
    async with community.app.db.transaction() as db:
        entries = (await db.scalars(select(models.AuditEntry).order_by(models.AuditEntry.id))).all()
    commands = [e.command for e in entries]
    assert commands[:3] == ["community", "grid add", "grid add"]
    households = next(e for e in entries if e.command == "household add")
    assert sum(1 for c in households.changes if c["table"] == "households" and c["op"] == "insert") == 24


async def test_refusals_name_the_role_needed(community, tmp_path):
    register = tmp_path / "r.csv"
    register.write_text("household\n11-1-101\n", encoding="utf-8")
    for who, line, role in [
        ("wang", "/household import", "网格长"),
        ("wang", "/role @li member", "网格长"),
        ("li", "/grid add g9 九网格", "社区书记"),
    ]:
        if line == "/household import":
            await community.say(f":attach {register}")
        out = await community.say(f":as {who}", ":in g1chat", line)
        assert f"需要「{role}」或以上角色" in out.text("g1chat"), line
    out = await community.say(":as stranger", "/grid list")  # not a member yet: told to join
    assert "需要先报到成为网格员" in out.text("g1chat") and "/join" in out.text("g1chat")
    assert await count(community, models.Household, models.Household.code == "11-1-101") == 0
    assert await count(community, models.Grid) == 2

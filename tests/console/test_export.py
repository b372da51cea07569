"""/export and `gridbot export`: each kind's CSV for a seeded community, read back with the
csv module; the byte-order mark; column names in the community's language; times in its
time zone; the leader's grid only; refusals in grid chats and to members."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from storage import models
from tests.console.test_cli import run

BOM = b"\xef\xbb\xbf"


async def person_id(db, user: str) -> int:
    return await db.scalar(select(models.Person.id).where(models.Person.external_id == user))


async def seed(bot) -> None:
    """Screenings, a key person with a check-in, errands in two grids, a shift with a slot
    taken and one waiting, and a supply report (straight into the database)."""
    await bot.say(":as admin", ":in g2chat", "/household add 5-1-101", "/errand 二网格的事")
    await bot.say(":as wang", ":in g1chat", "/screen 3-1-101 fever temp=38.4 咳嗽",
                  "/screen 3-1-102 ok people=3", ":dm", "/watch add 3-1-102 张三 close-contact",
                  "/checkin K1 38.4 咳嗽")
    await bot.say(":as zhang Zhang", ":in g1chat", "/errand 买菜 for=3-1-101 by=18:00",
                  ":as wang", "/claim E2", "/done E2 放在门口了")
    await bot.say(":as lead", "/post add 卡口 北门", "/shift add 卡口 tomorrow 08:00-12:00 slots=1",
                  ":as wang", "/signup S1", ":as li", "/signup S1")
    async with bot.app.db.transaction() as db:
        community = await db.scalar(select(models.Community))
        g1 = await db.scalar(select(models.Grid).where(models.Grid.code == "g1"))
        item = models.SupplyItem(community_id=community.id, grid_id=g1.id, name="口罩",
                                 category="protective", unit="个", minimum=100)
        db.add(item)
        await db.flush()
        db.add(models.SupplyReport(item_id=item.id, level=80, by_id=await person_id(db, "wang"),
                                   at=bot.app.clock.now()))


async def export(bot, line: str) -> tuple[list[list[str]], bytes, str]:
    out = await bot.say(line)
    [sent] = [b for b in out if b.file]
    data = (bot.workdir / sent.file).read_bytes()
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    return rows, data, out.text()


async def test_each_export_of_the_whole_community_in_the_hq_chat(community):
    bot = community
    await seed(bot)
    await bot.say(":as admin", ":in hq")

    rows, data, text = await export(bot, "/export screenings")
    assert data.startswith(BOM) and not data[3:].startswith(BOM)
    assert "全社区的排查记录，共 2 行" in text
    assert rows == [
        ["网格", "住户", "轮次", "状态", "在家人数", "体温(°C)", "备注", "登记人", "时间"],
        ["g1", "3-1-101", "1", "发热", "", "38.4", "咳嗽", "@wang", "2026-02-10 09:00"],
        ["g1", "3-1-102", "1", "正常", "3", "", "", "@wang", "2026-02-10 09:00"],
    ]  # 09:00 in Shanghai, not 01:00 UTC

    rows, _, _ = await export(bot, "/export keypersons")
    assert rows == [
        ["编号", "网格", "住户", "姓名", "原因", "开始观察", "观察至", "结束观察", "跟进人",
         "随访次数", "预警次数", "最近随访", "最近体温(°C)", "已匿名化"],
        ["K1", "g1", "3-1-102", "张三", "密切接触者", "2026-02-10 09:00", "", "", "@wang",
         "1", "1", "2026-02-10 09:00", "38.4", "否"],
    ]

    rows, _, _ = await export(bot, "/export errands")
    assert rows == [
        ["编号", "网格", "内容", "住户", "期限", "状态", "发布人", "发布时间", "认领人",
         "认领时间", "完成时间", "备注"],
        ["E1", "g2", "二网格的事", "", "", "待认领", "@admin", "2026-02-10 09:00", "", "", "",
         ""],
        ["E2", "g1", "买菜", "3-1-101", "2026-02-10 18:00", "已完成", "@zhang",
         "2026-02-10 09:00", "@wang", "2026-02-10 09:00", "2026-02-10 09:00", "放在门口了"],
    ]

    rows, _, _ = await export(bot, "/export shifts")
    assert rows == [
        ["编号", "网格", "岗位", "日期", "开始", "结束", "名额", "已报名", "值班人员", "候补",
         "缺勤"],
        ["S1", "g1", "卡口", "2026-02-11", "08:00", "12:00", "1", "1", "@wang", "1", ""],
    ]

    rows, _, _ = await export(bot, "/export supplies")
    assert rows == [
        ["网格", "物资", "类别", "单位", "数量", "最低库存", "登记人", "时间"],
        ["g1", "口罩", "防护用品", "个", "80", "100", "@wang", "2026-02-10 09:00"],
    ]

    rows, _, _ = await export(bot, "/export members")
    assert rows[0] == ["网格", "成员", "显示名", "角色", "类别", "党员", "工作单位", "加入时间",
                       "值班时长(小时)"]
    assert rows[1:] == [
        ["g1", "@lead", "lead", "网格长", "机关干部", "是", "街道办", "2026-02-10 09:00", "0"],
        ["g1", "@wang", "wang", "网格员", "社区工作者", "否", "", "2026-02-10 09:00", "0"],
        ["g1", "@li", "li", "网格员", "志愿者", "否", "", "2026-02-10 09:00", "0"],
        ["", "@admin", "admin", "社区书记", "", "否", "", "2026-02-10 09:00", "0"],
    ]


async def test_column_names_and_values_in_english(community):
    bot = community
    await seed(bot)
    await bot.say(":as admin", ":in hq", "/set lang en")
    rows, data, text = await export(bot, "/export errands")
    assert data.startswith(BOM) and "Exported the errands of the whole community" in text
    assert rows[0] == ["ID", "grid", "text", "household", "due", "state", "posted by",
                       "posted at", "claimed by", "claimed at", "done at", "note"]
    assert rows[2][:6] == ["E2", "g1", "买菜", "3-1-101", "2026-02-10 18:00", "done"]
    rows, _, _ = await export(bot, "/export screenings")
    assert rows[0][:4] == ["grid", "household", "round", "status"] and rows[1][3] == "fever"


async def test_a_leader_exports_their_grid_in_a_direct_chat_for_a_period(community):
    bot = community
    await seed(bot)
    await bot.say(":as lead", ":dm")
    rows, _, text = await export(bot, "/export errands")
    assert "网格 g1 的代办，共 1 行" in text
    assert [row[0] for row in rows[1:]] == ["E2"]  # not g2's E1

    rows, _, _ = await export(bot, "/export errands from=2026-02-10 to=today")
    assert [row[0] for row in rows[1:]] == ["E2"]
    rows, _, text = await export(bot, "/export errands to=2026-02-09")
    assert rows[1:] == [] and "共 0 行（最早 至 2026-02-09）" in text
    rows, _, _ = await export(bot, "/export members")
    assert [row[1] for row in rows[1:]] == ["@lead", "@wang", "@li"]

    out = await bot.say("/export errands from=2026-02-11 to=2026-02-10")
    assert "起始日期 2026-02-11 晚于结束日期 2026-02-10" in out.text() and not out[0].file
    out = await bot.say("/export errands from=yesterday-ish")
    assert "用法" in out.text()
    out = await bot.say("/export everything")
    assert "用法" in out.text() and "screenings|keypersons|errands" in out.text()


async def test_refused_in_grid_chats_and_to_members_without_producing_anything(community):
    bot = community
    await seed(bot)
    before = sorted(p.name for p in bot.workdir.iterdir())
    out = await bot.say(":as lead", ":in g1chat", "/export keypersons")
    assert out.texts() == ["/export 请在与我的私聊或社区指挥部群中使用。"]
    out = await bot.say(":as admin", ":in g1chat", "/export keypersons")  # a secretary too
    assert [b.file for b in out] == [None] and "请在与我的私聊或社区指挥部群中使用" in out.text()
    out = await bot.say(":as wang", ":dm", "/export keypersons")
    assert out.texts() == ["/export 需要「网格长」或以上角色。"]
    out = await bot.say(":as lead", ":in hq", "/export keypersons")  # a leader: their grid's,
    assert out.texts() == ["/export 请在与我的私聊中使用。"]  # by direct message
    assert sorted(p.name for p in bot.workdir.iterdir()) == before
    async with bot.app.db.transaction() as db:
        files = (await db.scalars(select(models.OutboxMessage.file_name)
                                  .where(models.OutboxMessage.file_name.is_not(None)))).all()
    assert files == []


def test_gridbot_export_from_the_command_line(tmp_path):
    session = "\n".join([
        ":as admin Admin", "/community 阳光社区", "/grid add g1 一网格", ":in g1chat",
        "/grid link g1", "/household add 3-1-101 3-1-102", ":as wang Wang", "/join",
        "/screen 3-1-101 fever temp=38.6 咳嗽", "/errand 买菜 for=3-1-102", "",
    ])
    assert run(session, tmp_path).returncode == 0
    result = run("", tmp_path, "export", "screenings", "--community", "阳光社区",
                 "--out", "out.csv")
    assert result.returncode == 0, result.stderr
    assert "1 rows written to out.csv" in result.stdout
    data = (tmp_path / "out.csv").read_bytes()
    assert data.startswith(BOM)
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][:4] == ["网格", "住户", "轮次", "状态"]
    assert rows[1][:7] == ["g1", "3-1-101", "1", "发热", "", "38.6", "咳嗽"]

    result = run("", tmp_path, "export", "errands", "--community", "1", "--from", "2000-01-01",
                 "--out", str(tmp_path / "e.csv"))
    assert result.returncode == 0, result.stderr
    assert list(csv.reader(io.StringIO((tmp_path / "e.csv").read_text("utf-8-sig"))))[1][:3] == [
        "E1", "g1", "买菜"
    ]

    result = run("", tmp_path, "export", "errands", "--community", "别的社区", "--out", "x.csv")
    assert result.returncode == 1 and "no community" in result.stderr
    assert not (tmp_path / "x.csv").exists()
    result = run("", tmp_path, "export", "errands", "--community", "1", "--from", "2026-02-30",
                 "--out", "x.csv")
    assert result.returncode == 2 and "not a date" in result.stderr
    assert "Traceback" not in result.stderr

"""The daily digest and /digest, through the console transport with :clock and :wait.

The community is set up at 19:00, so that reaching 20:00 takes few scheduler steps.

Most tests replace the registered sections with small test sections (their templates are
served from here), so that they check the digest itself — timing, exactly once, grid
order, privacy, splitting — whatever sections the domains have written. The tests at the
end check the domains' real sections on a seeded community, when they are registered.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from types import SimpleNamespace

import pytest
import pytest_asyncio
from sqlalchemy import select

from bot import i18n
from bot.registry import REGISTRY, DigestSection
from bot.transports.base import split_text
from storage import models
from storage.queries import next_number
from tests.harness import ConsoleBot, setup_community

NAME = "张三丰"  # a resident's name: private
TEMPERATURE = "38.6"  # a resident's temperature: private


def daily(out, chat: str) -> list[str]:
    return [t for t in out.texts(chat) if "每日汇总" in t]


async def sent_days(bot) -> list[tuple[date, bool]]:
    async with bot.app.db.transaction() as db:
        rows = await db.scalars(select(models.DigestSent).order_by(models.DigestSent.day))
        return [(row.day, row.late) for row in rows]


@pytest_asyncio.fixture
async def evening_bot(tmp_path):
    """A started bot, clock at 2026-02-10 19:00 Asia/Shanghai."""
    bot = ConsoleBot(tmp_path, start="2026-02-10T19:00")
    await bot.start()
    yield bot
    await bot.stop()


@pytest_asyncio.fixture
async def evening(evening_bot):
    """The common community (tests.harness.setup_community), set up at 19:00."""
    await setup_community(evening_bot)
    return evening_bot


@pytest.fixture
def sections(monkeypatch):
    """Replaces the digest's sections with test ones: `sections(name, order, fn, template)`."""
    templates: dict[str, str] = {}
    load = i18n._load
    monkeypatch.setattr(i18n, "_load", lambda lang, name: templates.get(name) or load(lang, name))
    registered: list[DigestSection] = []
    monkeypatch.setattr(REGISTRY, "digest_sections", registered)

    def add(name: str, order: int, function, template: str) -> None:
        templates[f"test/{name}.j2"] = template
        registered.append(DigestSection(name, order, function, f"test/{name}"))
        registered.sort(key=lambda s: s.order)

    return add


async def residents(actions, grid, since, until) -> dict:
    """g2 is the more urgent grid; each grid shows a private name and temperature."""
    about = SimpleNamespace(community_id=grid.community_id, grid_id=grid.id, watcher_id=None)
    return {"urgency": 5 if grid.code == "g2" else 1, "name": NAME, "temp": TEMPERATURE,
            "hours": (until - since) / timedelta(hours=1), "about": about}


# A blank line inside a section must not survive (it would be a split point).
RESIDENTS = "测试居民 {{ grid.code }}\n\n{{ name | private(about) }} {{ temp | private(about) }} {{ hours | num }}h\n"


async def quiet(actions, grid, since, until) -> dict:
    return {"urgency": 0}


QUIET = "测试平安 {{ grid.code }}：无\n"


@pytest.fixture
def two_sections(sections):
    sections("quiet", 20, quiet, QUIET)
    sections("residents", 10, residents, RESIDENTS)


# --- timing and content -----------------------------------------------------------------


async def test_digest_arrives_at_2000_local_time_grid_by_grid(evening, two_sections):
    out = await evening.say(":clock 2026-02-10T19:59")
    assert daily(out, "hq") == []
    out = await evening.say(":wait 1m")
    [hq] = daily(out, "hq")
    assert "阳光社区" in hq and "2026-02-10" in hq and "补发" not in hq
    # Most urgent grid first; within a grid, sections in their declared order.
    assert hq.index("▌g2") < hq.index("▌g1")
    assert hq.index("测试居民 g2") < hq.index("测试平安 g2") < hq.index("▌g1")
    # The HQ chat may see residents' details; the 24 h window ends now.
    assert f"{NAME} {TEMPERATURE} 24h" in hq
    [g1] = daily(out, "g1chat")
    [g2] = daily(out, "g2chat")
    assert "测试居民 g1" in g1 and "g2" not in g1
    assert "测试居民 g2" in g2 and "g1" not in g2
    for part in (g1, g2):
        assert NAME not in part and TEMPERATURE not in part
        assert "•••" in part
    assert sorted(out.chats()) == ["g1chat", "g2chat", "hq"]
    assert await sent_days(evening) == [(date(2026, 2, 10), False)]


async def test_sections_are_separated_by_one_blank_line_and_have_none_inside(evening, two_sections):
    out = await evening.say(":clock 2026-02-10T20:00")
    [hq] = daily(out, "hq")
    blocks = hq.split("\n\n")
    assert len(blocks) == 5  # header, then two sections in each of two grids
    assert blocks[1].splitlines() == ["▌g2 二网格", "测试居民 g2", f"{NAME} {TEMPERATURE} 24h"]
    assert blocks[2] == "测试平安 g2：无"
    assert blocks[3].startswith("▌g1 一网格\n测试居民 g1\n")


async def test_digest_with_no_sections_registered_says_so(evening, sections):
    out = await evening.say(":clock 2026-02-10T20:00")
    [hq] = daily(out, "hq")
    assert "▌g1 一网格\n暂无汇总项目。" in hq
    assert "▌g2 二网格\n暂无汇总项目。" in hq
    assert "暂无汇总项目。" in daily(out, "g1chat")[0]


async def test_a_failing_section_does_not_stop_the_digest(evening, sections):
    async def broken(actions, grid, since, until):
        raise RuntimeError("bug in a section")

    sections("broken", 10, broken, "never rendered\n")
    sections("quiet", 20, quiet, QUIET)
    out = await evening.say(":clock 2026-02-10T20:00")
    [hq] = daily(out, "hq")
    assert "「broken」部分暂时无法生成" in hq
    assert "测试平安 g1：无" in hq
    assert await sent_days(evening) == [(date(2026, 2, 10), False)]


async def test_digest_in_english(evening, two_sections):
    await evening.say(":in hq", "/set lang en")
    out = await evening.say(":clock 2026-02-10T20:00")
    [hq] = out.texts("hq")
    assert hq.startswith("阳光社区: daily digest for 2026-02-10")
    assert "2 grids, most urgent first." in hq


async def test_long_digest_splits_only_at_section_boundaries(evening, sections):
    async def long(actions, grid, since, until):
        return {"urgency": 1, "lines": [f"{grid.code} 第 {n} 行：3-1-{100 + n} 待跟进事项" for n in range(40)]}

    for n in range(3):
        sections(f"long{n}", n, long, f"长段落 {n}\n{{% for l in lines %}}\n{{{{ l }}}}\n{{% endfor %}}\n")
    out = await evening.say(":clock 2026-02-10T20:00")
    [hq] = daily(out, "hq")
    assert len(hq) > 4096
    blocks = hq.split("\n\n")
    parts = split_text(hq, 4096)
    assert len(parts) > 1
    assert all(len(p) <= 4096 for p in parts)
    # Every part is a run of whole blocks: the header, or a section (a grid's first one
    # carries the grid's heading).
    assert [b for p in parts for b in p.split("\n\n")] == blocks
    assert all(re.match(r"(▌g\d \S+\n)?长段落 \d\n", b) for b in blocks[1:])


# --- exactly once -----------------------------------------------------------------------


async def test_no_second_digest_after_a_restart(evening, two_sections):
    out = await evening.say(":clock 2026-02-10T20:00")
    assert len(daily(out, "hq")) == 1
    out = await evening.restart()
    assert out.texts() == []
    out = await evening.restart(clock="2026-02-11T19:59")
    assert out.texts() == []
    out = await evening.say(":wait 1m")
    [hq] = daily(out, "hq")
    assert "2026-02-11" in hq
    assert await sent_days(evening) == [(date(2026, 2, 10), False), (date(2026, 2, 11), False)]


async def test_digest_missed_while_down_is_sent_once_marked_late(evening, two_sections):
    # (A restart with a later clock is the bot stopped at the old time, started at the new.)
    await evening.restart(clock="2026-02-10T19:00")
    out = await evening.restart(clock="2026-02-10T21:30")  # down from 19:00 to 21:30
    [hq] = daily(out, "hq")
    assert "2026-02-10" in hq and "补发" in hq and "20:00" in hq
    assert len(daily(out, "g1chat")) == len(daily(out, "g2chat")) == 1
    out = await evening.restart()
    assert out.texts() == []
    assert await sent_days(evening) == [(date(2026, 2, 10), True)]
    await evening.restart(clock="2026-02-11T19:59")
    out = await evening.say(":wait 1m")
    [hq] = daily(out, "hq")
    assert "2026-02-11" in hq and "补发" not in hq


async def test_restart_days_later_sends_only_the_most_recent_missed_digest(evening, two_sections):
    out = await evening.restart(clock="2026-02-13T10:00")  # missed the 10th, 11th and 12th
    [hq] = daily(out, "hq")
    assert "2026-02-12" in hq and "补发" in hq
    assert await sent_days(evening) == [(date(2026, 2, 12), True)]
    out = await evening.restart(clock="2026-02-13T19:59")
    assert out.texts() == []
    out = await evening.say(":wait 1m")
    assert len(daily(out, "hq")) == 1


async def test_restart_sends_nothing_for_a_day_before_the_community_existed(evening, two_sections):
    # Created at 19:00 on the 10th: the last digest time (20:00 on the 9th) predates it.
    out = await evening.restart(clock="2026-02-10T19:30")
    assert out.texts() == []
    assert await sent_days(evening) == []


# --- settings ---------------------------------------------------------------------------


async def test_time_zone_change_is_honoured(evening, two_sections):
    await evening.say(":in hq", "/set tz Europe/Berlin")
    out = await evening.say(":clock 2026-02-10T20:00")  # Shanghai time
    assert daily(out, "hq") == []
    out = await evening.say(":clock 2026-02-11T02:59")
    assert daily(out, "hq") == []
    out = await evening.say(":wait 1m")  # 03:00 in Shanghai is 20:00 in Berlin
    [hq] = daily(out, "hq")
    assert "2026-02-10" in hq and "补发" not in hq


async def test_digest_time_change_is_honoured(evening, two_sections):
    await evening.say(":in hq", "/set digest 19:30")
    out = await evening.say(":clock 2026-02-10T19:29")
    assert daily(out, "hq") == []
    out = await evening.say(":wait 1m")
    assert len(daily(out, "hq")) == 1
    out = await evening.say(":clock 2026-02-10T20:00")
    assert out.texts() == []


async def test_a_new_community_gets_its_digest(evening_bot, sections):
    await evening_bot.say(":as admin", ":in hq2", "/community 新社区")
    out = await evening_bot.say(":clock 2026-02-10T20:00")
    [hq] = daily(out, "hq2")
    assert "新社区" in hq and "还没有网格" in hq


# --- /digest ------------------------------------------------------------------------------


async def test_secretary_gets_the_whole_community_on_demand(evening, two_sections):
    out = await evening.say(":as admin", ":in hq", "/digest")
    [hq] = out.texts("hq")
    assert "即时汇总" in hq and "▌g1" in hq and "▌g2" in hq
    assert NAME in hq
    assert out.chats() == ["hq"]
    assert await sent_days(evening) == []  # not the daily one, which still comes
    out = await evening.say(":clock 2026-02-10T20:00")
    assert len(daily(out, "hq")) == 1


async def test_secretary_in_a_grid_chat_gets_the_community_without_private_details(evening, two_sections):
    out = await evening.say(":as admin", ":in g1chat", "/digest")
    [text] = out.texts("g1chat")
    assert "▌g1" in text and "▌g2" in text
    assert NAME not in text and TEMPERATURE not in text


async def test_leader_gets_only_their_own_grid(evening, two_sections):
    out = await evening.say(":as lead", ":in g1chat", "/digest")
    [text] = out.texts("g1chat")
    assert "g1 一网格" in text and "测试居民 g1" in text
    assert "g2" not in text
    assert NAME not in text and TEMPERATURE not in text
    out = await evening.say(":as lead", ":dm", "/digest")
    [text] = out.texts("dm:lead")
    assert "测试居民 g1" in text and "g2" not in text
    assert NAME in text  # a leader sees their grid's health details in a direct chat


async def test_digest_is_refused_to_members_and_to_leaders_of_other_grids(evening, two_sections):
    out = await evening.say(":as wang", ":in g1chat", "/digest")
    assert out.texts() == ["/digest 需要「网格长」或以上角色。"]
    out = await evening.say(":as lead", ":in g2chat", "/digest")  # lead leads g1
    assert out.texts() == ["/digest 请在你所在网格的群聊中使用。"]


async def test_digest_takes_no_arguments(evening, two_sections):
    out = await evening.say(":as admin", ":in hq", "/digest now")
    [text] = out.texts("hq")
    assert "用法：\n/digest" in text and "即时汇总" not in text


# --- the domains' real sections, on a seeded community ------------------------------------


def require_section(domain: str) -> None:
    if not any(s.template.startswith(domain + "/") for s in REGISTRY.digest_sections):
        pytest.skip(f"no {domain} digest section registered")


async def seed(bot) -> None:
    """Screenings, a visitor, a vehicle and key persons in g1, written through the models
    (at 19:00 on 2026-02-10, the bot's clock)."""
    now = bot.app.clock.now()
    async with bot.app.db.transaction() as db:
        grid = await db.scalar(select(models.Grid).where(models.Grid.code == "g1"))
        homes = {h.code: h for h in await db.scalars(select(models.Household))}
        wang = await db.scalar(select(models.Person).where(models.Person.username == "wang"))
        common = {"community_id": grid.community_id, "grid_id": grid.id, "by_id": wang.id, "at": now}
        db.add(models.Screening(household_id=homes["3-1-101"].id, round_no=1, status="ok",
                                people=3, temperature=36.5, **common))
        db.add(models.Screening(household_id=homes["3-1-102"].id, round_no=1, status="fever",
                                people=2, temperature=38.9, **common))
        db.add(models.Visitor(household_id=homes["3-1-101"].id, origin="呼和浩特", **common))
        db.add(models.Vehicle(plate="蒙A12345", household_id=homes["3-1-101"].id, **common))
        alerted = models.KeyPerson(
            community_id=grid.community_id, number=await next_number(db, grid.community_id, "K"),
            grid_id=grid.id, household_id=homes["3-2-201"].id, name=NAME, reason="fever",
            started_at=now - timedelta(days=1), watcher_id=wang.id, created_by_id=wang.id,
        )
        overdue = models.KeyPerson(
            community_id=grid.community_id, number=await next_number(db, grid.community_id, "K"),
            grid_id=grid.id, household_id=homes["3-2-202"].id, name="李四光", reason="close-contact",
            started_at=now - timedelta(days=2), watcher_id=wang.id, created_by_id=wang.id,
        )
        db.add_all([alerted, overdue])
        await db.flush()
        db.add(models.CheckIn(key_person_id=alerted.id, temperature=float(TEMPERATURE),
                              symptoms="咳嗽", alert=True, by_id=wang.id, at=now))


async def evening_digest(bot):
    out = await bot.say(":clock 2026-02-10T20:00")
    [hq] = daily(out, "hq")
    [g1] = daily(out, "g1chat")
    [g2] = daily(out, "g2chat")
    return hq, g1, g2


async def test_real_sections_show_no_names_or_temperatures_in_grid_chats(evening):
    if not REGISTRY.digest_sections:
        pytest.skip("no digest section registered")
    await seed(evening)
    hq, g1, g2 = await evening_digest(evening)
    for part in (g1, g2):
        for private in (NAME, "李四光", TEMPERATURE, "38.9", "咳嗽"):
            assert private not in part


async def test_screening_section(evening):
    require_section("screening")
    await seed(evening)
    hq, g1, g2 = await evening_digest(evening)
    assert re.search(r"2\s*/\s*24", g1)  # coverage of the current round
    assert "3-1-102" in g1  # the new fever screening, by household
    assert "蒙A12345" in g1  # the vehicle of the day
    assert "蒙A12345" not in g2


async def test_keypersons_section(evening):
    require_section("keypersons")
    await seed(evening)
    hq, g1, g2 = await evening_digest(evening)
    assert "K1" in g1  # the alert of the last 24 h
    assert "K2" in g1  # overdue: no check-in for two days
    assert "K1" not in g2 and "K2" not in g2


async def test_errands_section(evening):
    require_section("errands")
    await evening.say(
        ":as wang", ":in g1chat", "/errand 买菜 for=3-1-101", "/errand 取药", "/errand 倒垃圾",
        ":as li", "/claim E2", ":as wang", "/claim E3", "/done E3",
    )
    hq, g1, g2 = await evening_digest(evening)
    assert "E1" in g1 and "E2" in g1 and "@li" in g1  # open, and claimed with its owner
    assert "E3" not in g1  # done
    assert "E1" not in g2
    assert "E1" in hq and "E2" in hq


async def test_a_digest_time_changed_through_another_instance_is_followed(community):
    """Two bot instances on one database: /set digest on the one that does not run the jobs
    still moves the digest of the one that does."""
    from bot.app import App
    from bot.transports.base import Incoming
    from tests.console.test_delivery import RecordingTransport

    other = App(community.config, clock=community.app.clock, instance_id="instance-b")
    await other.start([RecordingTransport(name="console")])
    await other.handle(Incoming(transport="console", chat="hq", sender="admin",
                                sender_username="admin", text="/set digest 19:30"))
    await other.stop()
    out = await community.say(":clock 2026-02-10T19:31")
    assert out.chats()[:1] == ["hq"] and "汇总" in out.texts("hq")[0]
    out = await community.say(":clock 2026-02-10T20:05")
    assert "hq" not in out.chats()

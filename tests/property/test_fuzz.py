"""Property-based fuzzing: random and hostile text, typed by anyone in any chat, to every
command through the dispatcher, gets a reply or a clean refusal — never an unhandled error —
and a refused command changes nothing in the database."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import commands  # noqa: F401  (declares every command)
from bot import args as args_module
from bot.args import Converter, signature_of
from bot.errors import ArgError
from bot.normalise import normalise
from bot.registry import REGISTRY
from bot.roles import Role, Where
from storage import models
from tests.harness import ConsoleBot, setup_community

USERS = ["admin Admin", "lead Lead", "wang Wang", "li Li", "zhang Zhang", "stranger S"]
CHATS = [":in hq", ":in g1chat", ":in g2chat", ":dm"]
# Bookkeeping of delivery, not domain data: a refusal's reply is queued like any reply.
NOT_DOMAIN = {"outbox", "processed_messages", "leases", "posted_messages"}

HOSTILE = [
    "{{7*7}}", "{% raw %}", "${jndi:x}", "'; DROP TABLE households;--", "\" OR 1=1 --",
    "<b>x</b>", "&amp;", "\u202eabc", "\u200f", "\u2066x\u2069", "\x00", "\x1b[31m", "9" * 400,
    "-1", "0", "E0", "E-1", "E99999999999", "K0", "S1", "@", "@@", "@" + "x" * 300, "=", "==",
    "temp=", "体温=99", "by=9999-12-31T23:59", "by=99999d", "until=0000-01-01", "1e309", "nan",
    "inf", "-0", "３-１-１０１", "Ｅ１", "３８，５", "１０：００", "２０２６／０２／１５",
    "ｆｅｖｅｒ",
    "😷", "👨‍👩‍👧", "ا", "\u3000", "京a", "12345", "confirm", "确认", "99999d", "25:99",
    "2026-02-30", "02-30", "明天", "后天", "今晚8点", "tomorrow", "3-1-101", "3-1-999", "E1",
    "K1", "@wang", "@lead", "g1", "g2", "fever", "ok", "38.5", "三十八度五", "2h", "zh", "en",
    "Asia/Shanghai", "Mars/Olympus", "/", "//", "\\", "%s%n", "\n", "a=b", "people=３",
]
# Words that make sense to some command: so that many fuzzed commands get past the parser
# and the rules and really run.
VALID = [
    "3-1-101", "3-1-102", "3-2-201", "E1", "E2", "K1", "@wang", "@li", "@lead", "ok", "fever",
    "away", "38.5", "37", "g1", "g2", "worker", "volunteer", "party", "home-observation",
    "明天", "18:00", "2h", "买菜", "张三", "24h", "3h", "zh", "en", "Asia/Shanghai", "leader",
    "member", "mine", "open", "京A12345", "followup", "claim", "retention", "90d", "digest",
    "people=2", "temp=38.2", "体温=37.5", "for=3-1-101", "by=明天", "until=02-20", "from=武汉",
    "watcher=@wang", "unit=街道", "咳嗽", "new", "list", "add", "assign", "release",
]
# Any character but control ones (those are refused before any parsing; HOSTILE has some).
PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs"))
FULL_WIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


def command_names() -> list[str]:
    names = []
    for cmd in REGISTRY.commands():
        names.append(cmd.name)
    names += list(REGISTRY.aliases)
    return sorted(set(names)) + ["nosuchcommand", "帮助x"]


def _word():
    options = sorted(args_module.KNOWN_OPTIONS)
    plain = st.sampled_from(HOSTILE) | st.text(PRINTABLE, min_size=1, max_size=12)
    option = st.tuples(st.sampled_from(options), plain).map(lambda kv: f"{kv[0]}={kv[1]}")
    word = plain | option
    return st.tuples(word, st.booleans()).map(
        lambda w: "".join(FULL_WIDTH.get(c, c) for c in w[0]) if w[1] else w[0]
    )


ARGS = (
    st.lists(st.sampled_from(VALID), max_size=4).map(" ".join)
    | st.lists(_word(), max_size=6).map(" ".join)
    | st.text(PRINTABLE, max_size=60)
    | st.text(max_size=20)  # control characters and all
)

# Words each kind of argument would take, so that fuzzed commands often get past the parser
# and the rules and really run (and then change the database).
WORDS_FOR = {
    "ExistingHousehold": ["3-1-101", "3-1-102", "3-2-201"],
    "HouseholdCode": ["3-1-101", "3-2-202"], "CodeOrBuilding": ["3-1-101", "5-1-101"],
    "HouseholdIfCode": ["3-1-101"], "Item": ["E1", "K1", "1", "E2"], "AnyItem": ["E1", "K1"],
    "Mention": ["@wang", "@li", "@lead"], "Temperature": ["38.5", "37"],
    "Integer": ["2", "3"], "Number": ["2.5"], "Duration": ["2h", "24h"],
    "Day": ["明天", "02-20"], "TimeOfDay": ["18:00"], "TimeRange": ["08:00-12:00"],
    "Moment": ["明天", "18:00", "3h"], "TimeZone": ["Asia/Shanghai"], "GridCode": ["g3", "g9"],
    "ExistingGrid": ["g1", "g2"], "VehiclePlate": ["京A12345"], "Place": ["武汉"],
    "Rest": ["买菜 两斤", "已送到"], "Word": ["张三", "followup"],
}
# Where and as whom each kind of command can run.
PLACE_FOR = {
    Where.GRID: [":in g1chat"], Where.HQ: [":in hq"], Where.DIRECT: [":dm"],
    Where.GROUP: [":in hq", ":in g1chat"], Where.COMMUNITY: [":in hq", ":in g1chat", ":dm"],
    Where.ANY: CHATS, "private": [":dm", ":in hq"],
}
USER_FOR = {
    Role.RESIDENT: ["zhang Zhang"], Role.MEMBER: ["wang Wang", "li Li"],
    Role.LEADER: ["lead Lead"], Role.SECRETARY: ["admin Admin"], Role.ADMIN: ["admin Admin"],
}


def _words(converter) -> list[str]:
    name = type(converter).__name__
    if name == "Choice":
        return list(converter.choices) + list(converter.aliases)
    if name == "Flag":
        return [converter.word]
    return WORDS_FOR.get(name, ["x"])


def _arguments(cmd) -> st.SearchStrategy[str]:
    parts = []
    for param in cmd.signature.params:
        valid = st.sampled_from(_words(param.converter))
        word = st.one_of(valid, valid, valid, _word())  # mostly right, sometimes hostile
        if param.option:
            parts.append(st.none() | word.map(lambda w, p=param: f"{p.word}={w}"))
        else:
            parts.append(st.none() | word if not param.required else word)
    return st.tuples(*parts).map(lambda ws: " ".join(w for w in ws if w))


def _plausible(cmd) -> st.SearchStrategy[tuple[str, str, str]]:
    name = st.sampled_from([cmd.name, *(a for a in cmd.aliases if not cmd.sub)])
    return st.tuples(
        st.sampled_from(USER_FOR.get(cmd.role, USERS) * 6 + USERS),
        st.sampled_from(PLACE_FOR.get(cmd.where, PLACE_FOR.get(str(cmd.where), CHATS)) * 6 + CHATS),
        st.tuples(name, _arguments(cmd)).map(" ".join),
    )


# A message: a command with arguments shaped for it, or any name with any text.
MESSAGE = st.sampled_from(REGISTRY.commands()).flatmap(_plausible) | st.tuples(
    st.sampled_from(USERS), st.sampled_from(CHATS),
    st.tuples(st.sampled_from(command_names()), ARGS).map(" ".join),
)


def snapshot(path) -> str:
    """A hash of every committed row of every domain table (read beside the bot)."""
    digest = hashlib.sha256()
    with sqlite3.connect(path) as db:
        for table in models.Base.metadata.sorted_tables:
            if table.name not in NOT_DOMAIN:
                rows = db.execute(f'SELECT * FROM "{table.name}" ORDER BY 1').fetchall()
                digest.update(f"{table.name}:{len(rows)}:{rows!r}".encode())
    return digest.hexdigest()


def test_every_command_answers_random_and_hostile_text(tmp_path):
    loop = asyncio.new_event_loop()
    bot = ConsoleBot(tmp_path)
    run = loop.run_until_complete
    run(bot.start())
    run(setup_community(bot))
    database = tmp_path / "gridbot.db"
    # Everyone has spoken in every chat once: later messages only read who they are.
    for user in USERS:
        for chat in CHATS:
            run(bot.say(f":as {user}", chat, "/help"))
    run(bot.say(":as zhang Zhang", ":in g1chat", "/errand 买菜 for=3-1-101",
                ":as wang Wang", "/watch add 3-1-102 张三 home-observation"))

    dispatcher = bot.app.dispatcher
    failures: list[str] = []
    refusals: list[str] = []
    sent: list[str] = []
    answer_failure, explain = dispatcher._answer_failure, dispatcher._explain

    async def failed(msg):
        failures.append(msg.text)
        return await answer_failure(msg)

    def explained(ctx, name, args, problem):
        refusals.append(getattr(problem, "template", None) or "refused")
        return explain(ctx, name, args, problem)

    dispatcher._answer_failure, dispatcher._explain = failed, explained

    @settings(max_examples=300, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(message=MESSAGE)
    def one_message(message):
        user, chat, line = message
        text = f"/{line}".replace("\n", " ")
        sent.append(line.split()[0] if line.split() else "")
        before = snapshot(database)
        seen = len(refusals)
        out = run(bot.say(f":as {user}", chat, text))
        assert not failures, f"unhandled error for {text!r}"
        if not text.strip().startswith("/") or "@" in text.split()[0]:
            return
        assert out.texts(), f"no answer to {text!r}"
        if len(refusals) > seen:
            assert snapshot(database) == before, f"refused {text!r} but changed the database"

    try:
        one_message()
        # The text reached the parsers and the rules, and many commands really ran.
        assert len(refusals) > 20 and len(sent) - len(refusals) > 10
        print(f"\n{len(sent)} messages to {len(set(sent))} commands: "
              f"{len(sent) - len(refusals)} ran, {len(refusals)} refused")
    finally:
        run(bot.stop())
        loop.close()


CONVERTERS = sorted(
    {
        type(p.converter).__name__: p.converter
        for cmd in REGISTRY.commands()
        for p in cmd.signature.params
        if type(p.converter).__module__ == "bot.args"
        # Those that look words up in the database are fuzzed through whole commands above.
        and not isinstance(p.converter, args_module.ExistingHousehold | args_module.ExistingGrid
                           | args_module.Mention | args_module.Item)
    }.items()
)


@pytest.mark.parametrize(("name", "converter"), CONVERTERS, ids=[n for n, _ in CONVERTERS])
@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=30) | st.sampled_from(HOSTILE))
def test_converters_read_a_word_or_say_what_is_wrong(name, converter: Converter, text):
    from datetime import datetime
    from types import SimpleNamespace
    from zoneinfo import ZoneInfo

    now = datetime(2026, 2, 10, 9, tzinfo=ZoneInfo("Asia/Shanghai"))
    ctx = SimpleNamespace(now=now, today=now.date(), tz="Asia/Shanghai")
    word = normalise(text)
    with contextlib.suppress(ArgError):
        asyncio.run(converter.take(ctx, word.split() or [word]))


async def sample(ctx, status: str, note: args_module.Text = "", *,
                 people: args_module.Int | None = None, temp: args_module.Celsius | None = None,
                 by: args_module.When | None = None, unit: args_module.Text = "") -> None:
    """A signature with every kind of parameter."""


@settings(max_examples=300, deadline=None)
@given(text=ARGS)
def test_the_parser_reads_any_line_or_says_what_is_wrong(text):
    from datetime import datetime
    from types import SimpleNamespace
    from zoneinfo import ZoneInfo

    now = datetime(2026, 2, 10, 9, tzinfo=ZoneInfo("Asia/Shanghai"))
    ctx = SimpleNamespace(now=now, today=now.date(), tz="Asia/Shanghai")
    try:
        values = asyncio.run(signature_of(sample).parse(ctx, normalise(text)))
    except ArgError:
        return
    for word in (values["note"] or "").split():  # nothing that names an option is kept as text
        key, eq, _ = word.partition("=")
        assert not (eq and key.lower() in {"people", "temp", "by", "unit", "人数", "体温"})

"""Property-based fuzzing: random and hostile text, typed by anyone in any chat, to every
command through the dispatcher, gets a reply or a clean refusal — never an unhandled error —
and a refused command changes nothing in the database."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import commands  # noqa: F401  (declares every command)
from bot import args as args_module
from bot.args import Converter, signature_of
from bot.errors import ArgError
from bot.normalise import normalise
from bot.registry import REGISTRY
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
    "inf", "-0", "３-１-１０１", "Ｅ１", "３８，５", "１０：００", "２０２６／０２／１５", "ｆｅｖｅｒ",
    "😷", "👨‍👩‍👧", "ا", "\u3000", "京a", "12345", "confirm", "确认", "99999d", "25:99",
    "2026-02-30", "02-30", "明天", "后天", "今晚8点", "tomorrow", "3-1-101", "3-1-999", "E1",
    "K1", "@wang", "@lead", "g1", "g2", "fever", "ok", "38.5", "三十八度五", "2h", "zh", "en",
    "Asia/Shanghai", "Mars/Olympus", "/", "//", "\\", "%s%n", "\n", "a=b", "people=３",
]
FULL_WIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


def command_names() -> list[str]:
    names = []
    for cmd in REGISTRY.commands():
        names.append(cmd.name)
    names += list(REGISTRY.aliases)
    return sorted(set(names)) + ["nosuchcommand", "帮助x"]


def _word():
    options = sorted(args_module.KNOWN_OPTIONS)
    plain = st.sampled_from(HOSTILE) | st.text(min_size=1, max_size=12)
    option = st.tuples(st.sampled_from(options), plain).map(lambda kv: f"{kv[0]}={kv[1]}")
    word = plain | option
    return st.tuples(word, st.booleans()).map(
        lambda w: "".join(FULL_WIDTH.get(c, c) for c in w[0]) if w[1] else w[0]
    )


ARGS = st.lists(_word(), max_size=6).map(" ".join) | st.text(max_size=60)


def _hash_tables(session) -> str:
    digest = hashlib.sha256()
    for table in models.Base.metadata.sorted_tables:
        if table.name not in NOT_DOMAIN:
            rows = session.execute(select(table).order_by(*table.primary_key)).all()
            digest.update(f"{table.name}:{len(rows)}:{rows!r}".encode())
    return digest.hexdigest()


async def snapshot(bot) -> str:
    """A hash of every row of every domain table."""
    async with bot.app.db.transaction() as db:
        return await db.run_sync(_hash_tables)


def test_every_command_answers_random_and_hostile_text(tmp_path):
    loop = asyncio.new_event_loop()
    bot = ConsoleBot(tmp_path)
    run = loop.run_until_complete
    run(bot.start())
    run(setup_community(bot))
    # Everyone has spoken in every chat once: later messages only read who they are.
    for user in USERS:
        for chat in CHATS:
            run(bot.say(f":as {user}", chat, "/help"))
    run(bot.say(":as zhang Zhang", ":in g1chat", "/errand 买菜 for=3-1-101",
                ":as wang Wang", "/watch add 3-1-102 张三 home-observation"))

    dispatcher = bot.app.dispatcher
    failures: list[str] = []
    refusals: list[str] = []
    answer_failure, explain = dispatcher._answer_failure, dispatcher._explain

    async def failed(msg):
        failures.append(msg.text)
        return await answer_failure(msg)

    def explained(ctx, name, args, problem):
        refusals.append(name)
        return explain(ctx, name, args, problem)

    dispatcher._answer_failure, dispatcher._explain = failed, explained

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(user=st.sampled_from(USERS), chat=st.sampled_from(CHATS),
           name=st.sampled_from(command_names()), args=ARGS)
    def one_message(user, chat, name, args):
        text = f"/{name} {args}".replace("\n", " ")
        before = run(snapshot(bot))
        seen = len(refusals)
        out = run(bot.say(f":as {user}", chat, text))
        assert not failures, f"unhandled error for {text!r}"
        if not text.strip().startswith("/") or "@" in text.split()[0]:
            return
        assert out.texts(), f"no answer to {text!r}"
        if len(refusals) > seen:
            assert run(snapshot(bot)) == before, f"refused {text!r} but changed the database"

    try:
        one_message()
        assert len(refusals) > 20  # the hostile text did reach the parsers and the rules
    finally:
        run(bot.stop())
        loop.close()


CONVERTERS = sorted(
    {
        type(p.converter).__name__: p.converter
        for cmd in REGISTRY.commands()
        for p in cmd.signature.params
        if type(p.converter).__module__ == "bot.args"
        and type(p.converter).__name__ not in {"ExistingHousehold", "ExistingGrid", "Mention", "Item"}
    }.items()
)


@pytest.mark.parametrize(("name", "converter"), CONVERTERS, ids=[n for n, _ in CONVERTERS])
@settings(max_examples=150, deadline=None)
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

"""The signature parser: positional words, key=value options in any order, free text."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Literal

import pytest

from bot.args import Int, Interval, Text, parse_duration, signature_of
from bot.errors import ArgError


async def sample(ctx, status: Literal["ok", "fever"], people: Int = 1, *, temp: Int | None = None,
                 unit: Text = "", note: Text = "") -> None:
    """A command for tests."""


async def with_text(ctx, text: Text, *, by: Interval | None = None) -> None:
    """Free text first, options anywhere after it."""


SIG = signature_of(sample)
CTX = SimpleNamespace()


def test_usage_line_comes_from_the_signature():
    assert SIG.usage() == "<ok|fever> [people] [temp=<n>] [unit=<unit…>] [note=<note…>]"
    assert signature_of(with_text).usage() == "<text…> [by=<duration>]"


async def test_options_in_any_order_and_optional_positionals():
    values = await SIG.parse(CTX, "fever temp=38 3")
    assert values == {"status": "fever", "people": 3, "temp": 38, "unit": "", "note": ""}
    values = await SIG.parse(CTX, "ok unit=区 卫健委 note=x")
    assert values["unit"] == "区 卫健委" and values["note"] == "x" and values["people"] == 1


async def test_free_text_keeps_newlines_and_drops_options():
    values = await signature_of(with_text).parse(CTX, "买菜 by=3h\n两斤白菜\n 一袋米")
    assert values["text"] == "买菜\n两斤白菜\n 一袋米"
    assert values["by"] == timedelta(hours=3)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "missing"),
        ("maybe", "choice"),
        ("ok x", "integer"),
        ("ok 1 2", "unexpected"),
        ("ok tmp=3", "unknown_option"),
        ("ok temp=1 temp=2", "duplicate_option"),
        ("ok temp=", "missing"),
    ],
)
async def test_bad_input_names_the_problem(text, problem):
    with pytest.raises(ArgError) as error:
        await SIG.parse(CTX, text)
    assert error.value.template == problem


@pytest.mark.parametrize(
    ("word", "minutes"), [("90m", 90), ("3h", 180), ("2d", 2880), ("1h30m", 90), ("2小时", 120)]
)
def test_durations(word, minutes):
    assert parse_duration(word) == timedelta(minutes=minutes)


@pytest.mark.parametrize("word", ["", "3", "h", "0m", "3x", "-3h"])
def test_bad_durations(word):
    with pytest.raises(ArgError):
        parse_duration(word)

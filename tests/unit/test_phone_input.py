"""What people type on phones: one normalisation, then the same converters everywhere."""

from __future__ import annotations

from datetime import date, datetime, time
from types import SimpleNamespace
from typing import Annotated
from zoneinfo import ZoneInfo

import pytest

from bot.args import (
    Also,
    Celsius,
    Date,
    Int,
    Plate,
    Text,
    When,
    convert,
    parse_temperature,
    signature_of,
)
from bot.dispatch import split_command
from bot.errors import ArgError
from bot.i18n import Renderer
from bot.normalise import normalise
from storage.households import normalise_household

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 2, 10, 9, 0, tzinfo=TZ)
CTX = SimpleNamespace(now=NOW, today=NOW.date(), tz="Asia/Shanghai")


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("／ｃｌａｉｍ　Ｅ１", "/claim E1"),
        ("/screen ３-１-１０１ ok people＝３", "/screen 3-1-101 ok people=3"),
        ("/screen ３－１－１０１ fever 体温＝３８．５", "/screen 3-1-101 fever 体温=38.5"),
        ("/errand 买菜 by=２０：００", "/errand 买菜 by=20:00"),
        ("体温=38。5", "体温=38.5"),
        ("E\u200b7\u200f", "E7"),
        ("／ｓｅｔ　ｆｏｌｌｏｗｕｐ　２４ｈ", "/set followup 24h"),
    ],
)
def test_full_width_and_invisible_marks_fold_to_plain(typed, read):
    assert normalise(typed) == read


@pytest.mark.parametrize(
    "prose",
    ["注意：明天停水，请备水！", "（三楼）张三、李四？", "王五；赵六", "龘 𠀋 﨑 㐂", "髙橋"],
)
def test_chinese_prose_and_names_stay_as_typed(prose):
    assert normalise(prose) == prose


def test_commands_split_after_normalising():
    assert split_command(normalise("／ｃｌａｉｍ　Ｅ１")) == ("claim", None, "E1")
    assert normalise_household(normalise("３-１-１０１")) == "3-1-101"


@pytest.mark.parametrize(
    ("typed", "celsius"),
    [
        ("38.5", 38.5), ("38,5", 38.5), ("38.5度", 38.5), ("38.5°C", 38.5), ("38.5℃", 38.5),
        ("38.5°", 38.5), ("三十八度五", 38.5), ("三十八点五", 38.5), ("38度5", 38.5),
        ("三十七度", 37.0), ("36", 36.0), ("37.25", 37.2),
    ],
)
async def test_temperatures_as_typed(typed, celsius):
    assert await convert(CTX, Celsius, normalise(typed)) == celsius


@pytest.mark.parametrize("typed", ["hot", "100.4F", "3850", "38..5", "三十八度", "", "1e3"])
async def test_bad_temperatures_are_refused_with_the_accepted_form(typed):
    if typed == "三十八度":
        assert parse_temperature(typed) == 38.0  # a whole number is a temperature
        return
    with pytest.raises(ArgError) as error:
        await convert(CTX, Celsius, typed)
    assert error.value.template == "temperature"
    text = Renderer().render("zh", "args/temperature", word=typed)
    assert "36.5度" in text and "三十六度五" in text


@pytest.mark.parametrize(
    ("typed", "day"),
    [
        ("明天", date(2026, 2, 11)), ("后天", date(2026, 2, 12)), ("tomorrow", date(2026, 2, 11)),
        ("Tomorrow", date(2026, 2, 11)), ("2月15日", date(2026, 2, 15)),
        ("02-15", date(2026, 2, 15)), ("2/15", date(2026, 2, 15)),
        ("2026/02/15", date(2026, 2, 15)), ("2026年2月15日", date(2026, 2, 15)),
        ("2026-02-15", date(2026, 2, 15)), ("12-31", date(2025, 12, 31)),
        ("周五", date(2026, 2, 13)), ("下周一", date(2026, 2, 16)),
    ],
)
async def test_dates_as_typed(typed, day):
    assert await convert(CTX, Date, normalise(typed)) == day


@pytest.mark.parametrize(
    ("typed", "moment"),
    [
        ("20:00", datetime(2026, 2, 10, 20, 0)),
        ("8:00", datetime(2026, 2, 11, 8, 0)),  # past today: tomorrow
        ("今晚8点", datetime(2026, 2, 10, 20, 0)),
        ("明早9点", datetime(2026, 2, 11, 9, 0)),
        ("明天18:00", datetime(2026, 2, 11, 18, 0)),
        ("晚上8点半", datetime(2026, 2, 10, 20, 30)),
        ("下午三点", datetime(2026, 2, 10, 15, 0)),
        ("8pm", datetime(2026, 2, 10, 20, 0)),
        ("明天", datetime(2026, 2, 11, 23, 59)),
        ("tomorrow", datetime(2026, 2, 11, 23, 59)),
        ("2月15日", datetime(2026, 2, 15, 23, 59)),
        ("2月15日20:00", datetime(2026, 2, 15, 20, 0)),
        ("02-15T18:00", datetime(2026, 2, 15, 18, 0)),
        ("2026-02-15T18:00", datetime(2026, 2, 15, 18, 0)),
        ("3h", datetime(2026, 2, 10, 12, 0)),
        ("2099-01-01T00:00", datetime(2099, 1, 1, 0, 0)),
    ],
)
async def test_moments_as_typed(typed, moment):
    assert await convert(CTX, When, normalise(typed)) == moment.replace(tzinfo=TZ)


@pytest.mark.parametrize("typed", ["soon", "25:00", "99999999d", "9999-12-31T23:59", "13pm"])
async def test_bad_moments_are_refused(typed):
    with pytest.raises(ArgError) as error:
        await convert(CTX, When, typed)
    assert error.value.template in ("moment", "duration")


async def errand(ctx, text: Text, *, for_: str = "", by: When | None = None) -> None:
    """A command with free text and options."""


async def screen(ctx, status: str, note: Text = "", *, people: Int | None = None,
                 temp: Celsius | None = None,
                 slots: Annotated[Int, Also("名额", "空位")] = 1) -> None:
    """A command with number options, one with its own Chinese names."""


async def plain(ctx, note: Text = "") -> None:
    """A command without options."""


async def vehicle(ctx, plate: Plate, note: Text = "") -> None:
    """A plate typed with a space."""


async def test_chinese_option_names_are_the_english_ones():
    values = await signature_of(screen).parse(CTX, normalise("fever 体温=38,5 人数＝3 名额=2 咳嗽"))
    assert values == {"status": "fever", "note": "咳嗽", "people": 3, "temp": 38.5, "slots": 2}
    values = await signature_of(screen).parse(CTX, "ok 空位=4 TEMP=37")
    assert values["slots"] == 4 and values["temp"] == 37.0


async def test_a_day_and_a_time_typed_apart_are_one_moment():
    values = await signature_of(errand).parse(CTX, "买菜 by=明天 18:00 两斤白菜 为=3-1-101")
    assert values["by"] == datetime(2026, 2, 11, 18, 0, tzinfo=TZ)
    assert values["text"] == "买菜 两斤白菜" and values["for_"] == "3-1-101"
    values = await signature_of(errand).parse(CTX, "买菜 期限=tomorrow 两斤")
    assert values["by"] == datetime(2026, 2, 11, 23, 59, tzinfo=TZ) and values["text"] == "买菜 两斤"


@pytest.mark.parametrize(
    ("sig", "text", "problem"),
    [
        (errand, "买菜 price=3", "unknown_option"),
        (errand, "买菜 价格=3", "unknown_option"),
        (errand, "买菜 by=明天 by=后天", "duplicate_option"),
        (errand, "买菜 by=", "missing"),
        (plain, "送到了 people=3", "no_options"),
        (plain, "送到了 人数=3", "no_options"),
    ],
)
async def test_key_value_is_never_swallowed_into_text(sig, text, problem):
    with pytest.raises(ArgError) as error:
        await signature_of(sig).parse(CTX, text)
    assert error.value.template == problem


async def test_text_with_an_equals_sign_that_is_no_option_stays_text():
    values = await signature_of(plain).parse(CTX, "见 https://x.cn/?a=1 和 1+1=2")
    assert values["note"] == "见 https://x.cn/?a=1 和 1+1=2"


@pytest.mark.parametrize(
    ("typed", "plate"),
    [
        ("京a 12345", "京A12345"), ("京A12345", "京A12345"), ("粤BD12345", "粤BD12345"),
        ("沪A12345D", "沪A12345D"), ("京A·12345", "京A12345"), ("苏E 1234学", "苏E1234学"),
    ],
)
async def test_plates_are_chinese_plates(typed, plate):
    values = await signature_of(vehicle).parse(CTX, normalise(typed) + " 送货")
    assert values == {"plate": plate, "note": "送货"}


@pytest.mark.parametrize("typed", ["😷", "京A", "AB12345", "京A1234", "京AO1234", "京A1234567"])
async def test_bad_plates_are_refused(typed):
    with pytest.raises(ArgError) as error:
        await signature_of(vehicle).parse(CTX, typed)
    assert error.value.template == "plate"


def test_times_in_another_year_show_the_year():
    renderer = Renderer(SimpleNamespace(now=lambda: NOW))
    env = renderer._envs["zh"]
    template = env.from_string("{{ t | localtime }}")
    shown = template.render(_tz=TZ, _now=NOW, t=datetime(2099, 1, 1, tzinfo=TZ))
    assert shown == "2099-01-01 00:00"
    assert template.render(_tz=TZ, _now=NOW, t=datetime(2026, 2, 15, 18, tzinfo=TZ)) == "02-15 18:00"
    assert time(0, 0)  # midnight is a time like any other


@pytest.mark.parametrize(
    ("typed", "hours"),
    [("08:00-12:00", (time(8), time(12))), ("8点-12点", (time(8), time(12))),
     ("晚上8点-10点", (time(20), time(22))), ("晚上10点-6点", (time(22), time(6))), ("２２：００－０６：００", (time(22), time(6)))],
)
async def test_time_ranges_as_typed(typed, hours):
    from bot.args import Hours

    assert await convert(CTX, Hours, normalise(typed)) == hours

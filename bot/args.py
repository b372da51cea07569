"""Argument conversion: a command's typed signature is its parser and its usage line.

Positional parameters take words in order; keyword-only parameters are `key=value` options
in any order, also under their Chinese names (`体温=` for `temp=`: OPTION_NAMES, or `Also`
in the annotation); a `key=value` no option of the command knows is refused, never kept as
text. A `Text` parameter takes the rest of the line. Each type below knows how to read one
word (a few, like plates and moments, may take the next word too: `京A 12345`,
`明天 18:00`) and how to show itself in the usage line. Converters that look things up
(households, `E7`) get the command's context. The text has been normalised before
(bot/normalise.py), so converters see half-width letters, digits and signs.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from difflib import get_close_matches
from functools import cached_property
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import joinedload

from bot.errors import ArgError
from storage import models
from storage.households import building_of, normalise_household

if typing.TYPE_CHECKING:
    from bot.context import Context


class Converter:
    placeholder = "value"  # shown for options (`temp=<°C>`) and for specific positionals
    by_name = False  # positionals shown by the parameter's name (`<qty>`, `<temp>`)

    async def convert(self, ctx: Context, word: str) -> Any:
        return word

    async def take(self, ctx: Context, words: list[str]) -> tuple[Any, int]:
        """Reads the value from the first of `words` (the words that follow, up to the next
        option); returns it and how many words it used. Values people type with a space in
        them (`京A 12345`, `明天 18:00`) override this."""
        return await self.convert(ctx, words[0]), 1

    def recognises(self, word: str) -> bool:
        """For an optional positional: whether `word` is meant for this parameter, so that
        a failure to read it is an error to report rather than a sign that the parameter was
        left out (and the word belongs to the next one)."""
        return False

    def usage(self, name: str) -> str:
        return f"<{name if self.by_name or not self.placeholder else self.placeholder}>"


class Also:
    """Other names of an option, declared in its annotation:
    `slots: Annotated[Int, Also("名额")] = 1`. Names shared by many commands are in
    OPTION_NAMES below."""

    def __init__(self, *names: str) -> None:
        self.names = names


class Rest(Converter):
    """The rest of the line, as typed."""


class Word(Converter):
    by_name = True
    def __init__(self, placeholder: str = "") -> None:
        self.placeholder = placeholder


class Integer(Converter):
    by_name = True
    placeholder = "n"

    def __init__(self, minimum: int = 0, maximum: int = 100_000) -> None:
        self.minimum, self.maximum = minimum, maximum

    async def convert(self, ctx: Context, word: str) -> int:
        value = chinese_number(word) if not word.lstrip("-").isdigit() else None
        if value is None:
            try:
                value = int(word)
            except ValueError:
                raise ArgError("integer", word=word) from None
        if not self.minimum <= value <= self.maximum:
            raise ArgError("range", word=word, low=self.minimum, high=self.maximum)
        return value


class Number(Converter):
    by_name = True
    placeholder = "n"

    async def convert(self, ctx: Context, word: str) -> float:
        try:
            value = float(word)
        except ValueError:
            raise ArgError("number", word=word) from None
        if value < 0 or value != value or value == float("inf"):
            raise ArgError("number", word=word)
        return value


class Choice(Converter):
    """One of fixed words; `aliases` maps other spellings (e.g. Chinese) to them."""

    def __init__(self, *choices: str, aliases: dict[str, str] | None = None) -> None:
        self.choices = choices
        self.aliases = aliases or {}

    async def convert(self, ctx: Context, word: str) -> str:
        key = word.lower()
        if key in self.choices:
            return key
        if word in self.aliases:
            return self.aliases[word]
        raise ArgError("choice", word=word, choices=self.choices)

    def usage(self, name: str) -> str:
        return "<" + "|".join(self.choices) + ">"


class Flag(Converter):
    """A bare word that switches something on, e.g. `party` in `/join volunteer party`."""

    def __init__(self, word: str, *aliases: str) -> None:
        self.words = {word, *aliases}
        self.word = word

    async def convert(self, ctx: Context, word: str) -> bool:
        if word.lower() in self.words or word in self.words:
            return True
        raise ArgError("flag", word=word, flag=self.word)

    def usage(self, name: str) -> str:
        return self.word


class Temperature(Converter):
    by_name = True
    placeholder = "°C"

    async def convert(self, ctx: Context, word: str) -> float:
        value = parse_temperature(word)
        if value is None or not 34.0 <= value <= 43.0:
            raise ArgError("temperature", word=word)
        return round(value, 1)


_TEMPERATURE_UNIT = re.compile(r"(?:°\s*[Cc]?|℃|[Cc]|度|摄氏度)$")


def parse_temperature(word: str) -> float | None:
    """`38.5`, `38,5`, `38.5度`, `38.5°C`, `38.5℃`, `38度5`, `三十八度五`, `三十八点五`."""
    text = word.strip().removeprefix("摄氏").replace(",", ".")
    text = _TEMPERATURE_UNIT.sub("", text)
    whole, sep, tenth = text.partition("度")
    if not sep:
        whole, sep, tenth = text.partition("点")
    if not sep:
        whole, sep, tenth = text.partition(".")
    number = _plain_or_chinese(whole)
    if number is None:
        return None
    if not sep:
        return float(number)
    if not tenth:
        return None
    if tenth.isdigit() and tenth.isascii():
        return float(f"{number}.{tenth}")
    digits = "".join(str(_CN_DIGITS.get(c, "x")) for c in tenth)
    return float(f"{number}.{digits}") if digits.isdigit() else None


_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}


def chinese_number(word: str) -> int | None:
    """`八` → 8, `十二` → 12, `三十八` → 38, `二十` → 20 (0–99); None if it is not one."""
    if not word or len(word) > 3:
        return None
    if all(c in _CN_DIGITS for c in word):
        return int("".join(str(_CN_DIGITS[c]) for c in word)) if len(word) <= 2 else None
    tens, sep, ones = word.partition("十")
    if not sep or (tens and tens not in _CN_DIGITS) or (ones and ones not in _CN_DIGITS):
        return None
    return (_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0)


def _plain_or_chinese(text: str) -> int | None:
    if text.isdigit() and text.isascii() and len(text) <= 3:
        return int(text)
    return chinese_number(text)


_DURATION = re.compile(r"(\d{1,7})\s*(d|h|m|天|小时|分钟|分)", re.IGNORECASE)
_DURATION_UNITS = {"d": 1440, "天": 1440, "h": 60, "小时": 60, "m": 1, "分钟": 1, "分": 1}
MAX_DURATION = timedelta(days=3660)  # anything longer is a typo, and would overflow dates


class Duration(Converter):
    placeholder = "duration"

    async def convert(self, ctx: Context, word: str) -> timedelta:
        return parse_duration(word)


def parse_duration(word: str) -> timedelta:
    """`90m`, `3h`, `2d`, `1h30m`, `3小时` (at most ten years)."""
    parts = _DURATION.findall(word)
    if not parts or _DURATION.sub("", word).strip():
        raise ArgError("duration", word=word)
    minutes = sum(int(n) * _DURATION_UNITS[u.lower()] for n, u in parts)
    if minutes <= 0 or minutes > MAX_DURATION.total_seconds() // 60:
        raise ArgError("duration", word=word)
    return timedelta(minutes=minutes)


# --- dates and times as people type them --------------------------------------------------

RELATIVE_DAYS = {
    "today": 0, "今天": 0, "今日": 0, "tomorrow": 1, "明天": 1, "明日": 1, "yesterday": -1,
    "昨天": -1, "后天": 2, "大后天": 3,
}
_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_FULL_DATE = re.compile(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})[日号]?")
_MONTH_DAY = re.compile(r"(\d{1,2})[-/月](\d{1,2})[日号]?")
_WEEKDAY = re.compile(r"(?:下)?(?:周|星期|礼拜)([一二三四五六日天])")


def parse_date(word: str, today: date) -> date | None:
    """`2026-02-15`, `2026/02/15`, `2026年2月15日`, `02-15`, `2/15`, `2月15日` (the nearest
    such day), `today`/`今天`, `tomorrow`/`明天`, `后天`, `周五`/`下周五`; None if not a date."""
    key = word.lower()
    if key in RELATIVE_DAYS:
        return today + timedelta(days=RELATIVE_DAYS[key])
    try:
        if match := _FULL_DATE.fullmatch(word):
            return date(int(match[1]), int(match[2]), int(match[3]))
        if match := _MONTH_DAY.fullmatch(word):
            month, day = int(match[1]), int(match[2])
            # The nearest such day: `02-15` typed in December means next February.
            candidates = []
            for year in (today.year - 1, today.year, today.year + 1):
                try:
                    candidates.append(date(year, month, day))
                except ValueError:
                    continue
            if not candidates:
                return None
            return min(candidates, key=lambda d: (abs((d - today).days), d < today))
    except ValueError:
        return None
    if match := _WEEKDAY.fullmatch(word):
        if word.startswith("下"):  # that day of next week (weeks start on Monday)
            return today + timedelta(days=7 - today.weekday() + _WEEKDAYS[match[1]])
        return today + timedelta(days=(_WEEKDAYS[match[1]] - today.weekday()) % 7)
    return None


class Day(Converter):
    """`2026-02-10`, `02-15`, `2月15日`, `today`, `tomorrow` (今天, 明天, 后天), in the
    community's time zone."""

    placeholder = "date"

    async def convert(self, ctx: Context, word: str) -> date:
        found = parse_date(word, ctx.today)
        if found is None:
            raise ArgError("date", word=word)
        return found


class TimeOfDay(Converter):
    placeholder = "HH:MM"

    async def convert(self, ctx: Context, word: str) -> time:
        return parse_time(word)


# `20:00`, `8点`, `8点半`, `8点15`, `8点15分`, `晚上8点`, `8pm`, `下午三点`
_PERIODS = {
    "早上": "am", "早晨": "am", "早": "am", "上午": "am", "凌晨": "am", "中午": "noon",
    "下午": "pm", "傍晚": "pm", "晚上": "pm", "晚": "pm", "夜里": "pm", "夜晚": "pm",
}
_PERIOD = "|".join(sorted(_PERIODS, key=len, reverse=True))
_CN_NUM = "[零〇一二两三四五六七八九十]{1,3}"
_CLOCK_CN = re.compile(
    rf"(?P<period>{_PERIOD})?(?P<h>\d{{1,2}}|{_CN_NUM})[点时]"
    rf"(?:(?P<half>半)|(?P<quarter>一刻|三刻)|(?P<m>\d{{1,2}}|{_CN_NUM})分?)?"
)
_CLOCK_COLON = re.compile(rf"(?P<period>{_PERIOD})?(?P<h>\d{{1,2}})[:：](?P<m>\d{{2}})")
_CLOCK_AMPM = re.compile(r"(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>am|pm)", re.IGNORECASE)


def parse_time(word: str) -> time:
    found = _parse_clock(word)
    if found is None:
        raise ArgError("time", word=word)
    return found


def _parse_clock(word: str) -> time | None:
    hour: int | None
    minute: int | None
    period = None
    if match := _CLOCK_COLON.fullmatch(word):
        hour, minute, period = int(match["h"]), int(match["m"]), match["period"]
    elif match := _CLOCK_AMPM.fullmatch(word):
        hour, minute = int(match["h"]), int(match["m"] or 0)
        if not 1 <= hour <= 12:
            return None
        period = "pm" if match["ampm"].lower() == "pm" else "am"
        hour = hour % 12
    elif match := _CLOCK_CN.fullmatch(word):
        hour = _plain_or_chinese(match["h"])
        if match["half"]:
            minute = 30
        elif match["quarter"]:
            minute = 15 if match["quarter"] == "一刻" else 45
        else:
            minute = _plain_or_chinese(match["m"]) if match["m"] else 0
        period = match["period"]
        if hour is None or minute is None:
            return None
    else:
        return None
    kind = _PERIODS.get(period or "", period)
    if (kind == "pm" and 1 <= hour < 12) or (kind == "noon" and 1 <= hour < 6):
        hour += 12
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return time(hour, minute)


class TimeRange(Converter):
    placeholder = "HH:MM-HH:MM"

    async def convert(self, ctx: Context, word: str) -> tuple[time, time]:
        start, sep, end = word.replace("–", "-").replace("~", "-").partition("-")
        if not sep:
            raise ArgError("time_range", word=word)
        first, last = parse_time(start), parse_time(end)
        period = re.match(_PERIOD, start)
        if period and not re.match(_PERIOD, end):
            # `晚上8点-10点` is 20:00–22:00, but `晚上10点-6点` ends in the morning.
            same = _parse_clock(period[0] + end)
            if same is not None and same > first:
                last = same
        return first, last


# A day word glued to a time: `今晚8点`, `明早9点`, `明天18:00`, `2月15日20:00`, `02-15T18:00`.
_DAY_PREFIX = {
    "今晚": ("今天", "晚上"), "今早": ("今天", "早上"), "明早": ("明天", "早上"),
    "明晚": ("明天", "晚上"), "明天早上": ("明天", "早上"), "明天晚上": ("明天", "晚上"),
}
_GLUED = re.compile(
    r"(?P<day>今天|明天|后天|大后天|今日|明日|(?i:today|tomorrow)"
    r"|\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}[日号]?"
    r"|\d{1,2}[-/月]\d{1,2}[日号]?)[T\s]?(?P<time>.+)"
)
END_OF_DAY = time(23, 59)


def parse_moment(text: str, now: datetime, tz: ZoneInfo) -> datetime | None:
    """A point in time as typed (see Moment); None if it is not one."""
    try:
        return now + parse_duration(text)
    except ArgError:
        pass
    today = now.astimezone(tz).date()
    for prefix, (day_word, period) in _DAY_PREFIX.items():
        if text.startswith(prefix) and text != prefix:
            text = f"{day_word} {period}{text[len(prefix):]}"
            break
    clock = _parse_clock(text)
    if clock is not None:
        local = datetime.combine(today, clock, tz)
        return local if local > now else local + timedelta(days=1)
    day = parse_date(text, today)
    if day is not None:
        return datetime.combine(day, END_OF_DAY, tz)
    if match := _GLUED.fullmatch(text):
        day, clock = parse_date(match["day"], today), _parse_clock(match["time"].strip())
        if day is not None and clock is not None:
            return datetime.combine(day, clock, tz)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


class Moment(Converter):
    """A due time: `18:00` or `8点` (today, or tomorrow if past), `今晚8点`, `明早9点`,
    `明天 18:00`, `明天` or `2月15日` (the end of that day), `2026-02-10T18:00`, `3h` from
    now."""

    placeholder = "time"

    async def convert(self, ctx: Context, word: str) -> datetime:
        found = parse_moment(word, ctx.now, ZoneInfo(ctx.tz))
        if found is None or not 2000 <= found.year <= 9000:
            raise ArgError("moment", word=word)
        return found

    async def take(self, ctx: Context, words: list[str]) -> tuple[datetime, int]:
        # A day and a time typed apart: `明天 18:00`, `tomorrow 8pm`.
        if len(words) > 1 and parse_date(words[0], ctx.today) and _parse_clock(words[1]):
            return await self.convert(ctx, f"{words[0]} {words[1]}"), 2
        return await self.convert(ctx, words[0]), 1


_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_SERIAL = "[A-HJ-NP-Z0-9]"  # no I or O on plates
_PLATE = re.compile(
    rf"[{_PROVINCES}][A-Z](?:{_SERIAL}{{4}}[A-HJ-NP-Z0-9挂学警港澳]"  # 京A12345, 粤B1234学
    rf"|[DF]{_SERIAL}\d{{4}}|\d{{5}}[DF])"  # new-energy: 京AD12345, 京A12345D
)


def normalise_plate(text: str) -> str | None:
    """`京a 12345`, `京A·12345`, `京A-12345` → `京A12345`; None if it is no Chinese plate."""
    plate = re.sub(r"[\s·•.\-]", "", text).upper()
    return plate if _PLATE.fullmatch(plate) else None


class VehiclePlate(Converter):
    """A Chinese vehicle plate: a province character, a letter, then five characters (six
    on new-energy plates); spaces taken out, letters upper-cased (`京a 12345` → `京A12345`)."""

    placeholder = "plate"

    async def convert(self, ctx: Context, word: str) -> str:
        plate = normalise_plate(word)
        if plate is None:
            if normalise_household(word) is not None:
                raise ArgError("missing", name="<plate>")  # a household where the plate goes
            raise ArgError("plate", word=word)
        return plate

    async def take(self, ctx: Context, words: list[str]) -> tuple[str, int]:
        if normalise_plate(words[0]) is None and len(words) > 1:
            joined = normalise_plate(words[0] + words[1])  # typed with a space: `京A 12345`
            if joined is not None:
                return joined, 2
        return await self.convert(ctx, words[0]), 1


class TimeZone(Converter):
    placeholder = "Area/City"

    async def convert(self, ctx: Context, word: str) -> str:
        try:
            ZoneInfo(word)
        except (ZoneInfoNotFoundError, ValueError):
            raise ArgError("timezone", word=word) from None
        return word


class HouseholdCode(Converter):
    """A household code as typed: `3-2-101` or `3栋2单元101室`, normalised."""

    placeholder = "household"

    async def convert(self, ctx: Context, word: str) -> str:
        code = normalise_household(word)
        if code is None:
            raise ArgError("household_code", word=word)
        return code


class GridCode(Converter):
    placeholder = "code"

    async def convert(self, ctx: Context, word: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", word):
            raise ArgError("grid_code", word=word)
        return word.lower()


class ExistingGrid(Converter):
    """A grid of this community, by code."""

    placeholder = GridCode.placeholder

    async def convert(self, ctx: Context, word: str) -> models.Grid:
        code = await GridCode().convert(ctx, word)
        community = ctx.require_community()
        grid = await ctx.db.scalar(
            select(models.Grid).where(
                models.Grid.community_id == community.id, models.Grid.code == code
            )
        )
        if grid is None:
            codes = (
                await ctx.db.scalars(
                    select(models.Grid.code).where(models.Grid.community_id == community.id)
                )
            ).all()
            raise ArgError("unknown_grid", word=word, codes=list(codes))
        return grid


class ExistingHousehold(Converter):
    """A household of this community's register; unknown ones get the nearest codes."""

    placeholder = HouseholdCode.placeholder
    # Built once: most commands of a grid's morning name a household.
    by_code = select(models.Household).where(
        models.Household.community_id == bindparam("community_id"),
        models.Household.code == bindparam("code"),
    )

    async def convert(self, ctx: Context, word: str) -> models.Household:
        code = await HouseholdCode().convert(ctx, word)
        community = ctx.require_community()
        found = await ctx.db.scalar(self.by_code, {"community_id": community.id, "code": code})
        if found is not None:
            return found
        query = select(models.Household.code).where(models.Household.community_id == community.id)
        if ctx.grid is not None:
            query = query.where(models.Household.grid_id == ctx.grid.id)
        same_building = query.where(models.Household.building == building_of(code))
        candidates = (await ctx.db.scalars(same_building)).all() or (
            await ctx.db.scalars(query.limit(2000))
        ).all()
        nearest = get_close_matches(code, candidates, n=3, cutoff=0.5)
        raise ArgError("unknown_household", code=code, nearest=nearest)


class Mention(Converter):
    """`@user`: a person on this transport, created on first mention if never seen."""

    placeholder = "@user"

    async def convert(self, ctx: Context, word: str) -> models.Person:
        if not word.startswith("@") or len(word) < 2:
            raise ArgError("mention", word=word)
        return await ctx.app.people.from_mention(ctx.db, ctx.message.transport, word, ctx.now)

    def usage(self, name: str) -> str:
        return "@user"


# Items with a per-community number (storage.queries.next_number).
Numbered = models.Errand | models.Shift | models.KeyPerson | models.SupplyNeed
N = typing.TypeVar("N", bound=Numbered)


class Item(Converter, typing.Generic[N]):
    """`E7`, `e7` or `7`: an item of this community with a per-community number."""

    def __init__(self, prefix: str, model: type[N]) -> None:
        self.prefix = prefix
        self.model = model
        self.placeholder = prefix
        self.pattern = re.compile(rf"(?:{prefix})?(\d{{1,9}})", re.IGNORECASE)
        # Built once, with the values bound at each use.
        self.by_number = self.query().where(
            model.community_id == bindparam("community_id"), model.number == bindparam("number")
        )

    def query(self) -> Select:
        return select(self.model)

    async def convert(self, ctx: Context, word: str) -> N:
        match = self.pattern.fullmatch(word)
        if not match:
            raise ArgError("item", word=word, prefix=self.prefix)
        community = ctx.require_community()
        number = int(match[1])
        item = await ctx.db.scalar(
            self.by_number, {"community_id": community.id, "number": number}
        )
        if item is None:
            raise ArgError("unknown_item", code=f"{self.prefix}{number}", prefix=self.prefix)
        return item


class KeyPersonItem(Item[models.KeyPerson]):
    """`K12`, with its household (`kp.household`) loaded in the same statement: commands on
    a key person name the household."""

    def __init__(self) -> None:
        super().__init__("K", models.KeyPerson)

    def query(self) -> Select:
        return select(models.KeyPerson).options(
            joinedload(models.KeyPerson.household, innerjoin=True)
        )


@dataclass(frozen=True)
class Private:
    """Marks a parameter that carries a resident's health detail (a name, a temperature,
    symptoms): typed in a group chat, the message is removed from the group where possible
    (bot/dispatch.py). `when` narrows it to some values (a `fever` status)."""

    when: typing.Callable[[Any], bool] | None = None

    def applies(self, value: Any) -> bool:
        if value is None or value == "" or value == []:
            return False
        return self.when is None or bool(self.when(value))


# The names commands use in their signatures.
Text = Annotated[str, Rest()]
Int = Annotated[int, Integer()]
Celsius = Annotated[float, Temperature()]
Interval = Annotated[timedelta, Duration()]
Date = Annotated[date, Day()]
Clock = Annotated[time, TimeOfDay()]
Hours = Annotated[tuple[time, time], TimeRange()]
When = Annotated[datetime, Moment()]
Zone = Annotated[str, TimeZone()]
Plate = Annotated[str, VehiclePlate()]
HouseholdRef = Annotated[models.Household, ExistingHousehold()]
NewGridCode = Annotated[str, GridCode()]
PersonRef = Annotated[models.Person, Mention()]
ErrandRef = Annotated[models.Errand, Item("E", models.Errand)]
ShiftRef = Annotated[models.Shift, Item("S", models.Shift)]
KeyPersonRef = Annotated[models.KeyPerson, KeyPersonItem()]


async def convert(ctx: Context, hint: Any, word: str) -> Any:
    """Reads one word as the given type, as a signature would (for values whose type depends
    on an earlier argument, like `/set <key> <value>`)."""
    return await _converter_for(hint).convert(ctx, word)


# --- the signature parser ---------------------------------------------------------------

_OPTION = re.compile(r"([^\W\d]\w*)=(.*)", re.DOTALL)

# Chinese names of the options commands share, declared once: `体温=38.5` is `temp=38.5`.
# A command adds names for its own options with `Also(...)` in the annotation.
OPTION_NAMES: dict[str, tuple[str, ...]] = {
    "temp": ("体温", "温度"),
    "people": ("人数",),
    "note": ("备注", "说明"),
    "from": ("来自", "来源", "从"),
    "for": ("为", "住户", "给"),
    "by": ("期限", "截止", "截止时间"),
    "until": ("直到", "截至", "到期"),
    "watcher": ("跟进人", "负责人"),
    "slots": ("名额",),
    "repeat": ("重复",),
    "unit": ("单位",),
    "units": ("单元", "单元数"),
    "floors": ("楼层", "层数"),
    "rooms": ("每层户数", "户数"),
    "qty": ("数量",),
    "reason": ("原因",),
    "at": ("时间",),
    "grid": ("网格",),
    "post": ("岗位",),
    "who": ("谁",),
    "kind": ("类型",),
}
# Every option name of every command: a `people=3` typed to a command without options is
# refused, not taken as text.
KNOWN_OPTIONS: set[str] = set()


@dataclass
class Param:
    name: str
    converter: Converter
    required: bool
    default: Any = None
    option: bool = False
    variadic: bool = False
    also: tuple[str, ...] = ()
    private: Private | None = None

    @property
    def rest(self) -> bool:
        return isinstance(self.converter, Rest)

    @property
    def word(self) -> str:
        """The option as typed: a trailing underscore lets `for_` stand for `for=` (PEP 8's
        way round Python keywords)."""
        return self.name.rstrip("_")

    @property
    def other_names(self) -> tuple[str, ...]:
        """An option's other names, as declared (OPTION_NAMES, then `Also`): `体温`, `温度`."""
        names = (*OPTION_NAMES.get(self.word, ()), *self.also) if self.option else ()
        return tuple(n for n in dict.fromkeys(names) if n.lower() != self.word.lower())

    def usage(self) -> str:
        if self.option:
            if self.rest:
                return f"[{self.word}=<{self.word}…>]"
            shown = self.converter.placeholder or self.word
            return f"[{self.word}={shown if shown.startswith('@') else f'<{shown}>'}]"
        if self.rest:
            return f"<{self.name}…>" if self.required else f"[{self.name}…]"
        shown = self.converter.usage(self.name)
        if self.variadic:
            shown = shown[:-1] + "…>" if shown.endswith(">") else shown + "…"
        if self.required:
            return shown
        return f"[{shown.removeprefix('<').removesuffix('>')}]"


@dataclass
class Signature:
    """A command's parameters, complete once `signature_of` returns (what is derived from
    them is worked out once, at the first use)."""

    params: list[Param] = field(default_factory=list)

    @cached_property
    def positional(self) -> list[Param]:
        return [p for p in self.params if not p.option]

    @cached_property
    def options(self) -> dict[str, Param]:
        return {p.word: p for p in self.params if p.option}

    @cached_property
    def option_names(self) -> dict[str, Param]:
        """Each option by its name and by its other names (`temp`, `体温`), lower-cased."""
        names = {}
        for p in self.params:
            if p.option:
                for name in (p.word, *p.other_names):
                    names[name.lower()] = p
        return names

    def private_values(self, values: dict[str, Any]) -> bool:
        """Whether any parameter marked `Private` was given a value."""
        return any(
            p.private is not None and p.private.applies(values.get(p.name)) for p in self.params
        )

    def usage(self) -> str:
        """Positional words, then options, then the free text, as people type them."""
        # Optional free text reads best last (`[people=<n>] [note…]`); required free text stays
        # where it is (`<text…> [for=<household>]`).
        ordered = sorted(
            self.params,
            key=lambda p: 2 if p.rest and not p.option and not p.required else int(p.option),
        )
        return " ".join(p.usage() for p in ordered)

    async def parse(self, ctx: Context, text: str) -> dict[str, Any]:
        """Reads `text` into keyword arguments, raising ArgError on the first problem."""
        words = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        values: dict[str, Any] = {}
        words = await self._take_options(ctx, text, words, values)
        pending: ArgError | None = None
        index = 0
        for param in self.positional:
            if param.rest:
                rest = _slice_rest(text, words[index:])
                if not rest and param.required:
                    raise ArgError("missing", name=param.usage())
                values[param.name] = rest or param.default
                index = len(words)
                continue
            if param.variadic:
                items = [await param.converter.convert(ctx, w) for w, _, _ in words[index:]]
                if not items and param.required:
                    raise ArgError("missing", name=param.usage())
                values[param.name] = items
                index = len(words)
                continue
            if index >= len(words):
                if param.required:
                    raise pending or ArgError("missing", name=param.usage())
                values[param.name] = param.default
                continue
            try:
                following = [w for w, _, _ in words[index:]]
                values[param.name], used = await param.converter.take(ctx, following)
                index += used
            except ArgError as error:
                if param.required or param.converter.recognises(words[index][0]):
                    raise
                pending = pending or error
                values[param.name] = param.default
        if index < len(words):
            raise pending or ArgError("unexpected", word=words[index][0])
        return values

    async def _take_options(self, ctx, text, words, values):
        names = self.option_names
        options = self.options

        def option_like(word: str) -> bool:
            m = _OPTION.fullmatch(word)
            return m is not None and (m[1].lower() in names or m[1].lower() in KNOWN_OPTIONS)

        kept = []
        i = 0
        while i < len(words):
            word = words[i][0]
            match = _OPTION.fullmatch(word)
            param = names.get(match[1].lower()) if match else None
            if param is None:
                if match and (names or match[1].lower() in KNOWN_OPTIONS):
                    # Never dropped nor taken as text: say which options there are.
                    if not names:  # the key is no private detail: it may be shown
                        raise ArgError("no_options", word=word, key=match[1])
                    raise ArgError("unknown_option", word=word, options=list(options))
                kept.append(words[i])
                i += 1
                continue
            key = param.word
            if param.name in values:
                raise ArgError("duplicate_option", name=key)
            if param.rest:
                # A free-text option runs until the next option.
                j = i + 1
                while j < len(words) and not option_like(words[j][0]):
                    j += 1
                value = (match[2] + " " + _slice_rest(text, words[i + 1 : j])).strip()
                i = j
                if not value:
                    raise ArgError("missing", name=key)
                values[param.name] = value
                continue
            if not match[2]:
                raise ArgError("missing", name=key)
            following = []
            for w, _, _ in words[i + 1 : i + 3]:
                if option_like(w):
                    break
                following.append(w)
            values[param.name], used = await param.converter.take(ctx, [match[2], *following])
            i += used
        for word, param in options.items():
            if param.name not in values:
                if param.required:
                    raise ArgError("missing", name=word)
                values[param.name] = param.default
        return kept


def _slice_rest(text: str, words: list[tuple[str, int, int]]) -> str:
    """The original text from the first of `words` to the last, keeping spacing and newlines,
    minus any option words taken out between them."""
    if not words:
        return ""
    pieces = [text[words[0][1] : words[0][2]]]
    for (_, _, prev_end), (_, start, end) in zip(words, words[1:], strict=False):
        gap = text[prev_end:start]
        if gap.strip():  # an option was taken out here: keep the line break, if any
            gap = "\n" if "\n" in gap else " "
        pieces.append(gap)
        pieces.append(text[start:end])
    return "".join(pieces).strip()


def signature_of(function) -> Signature:
    """Builds the parser of a command from its signature (the first parameter is the context)."""
    hints = typing.get_type_hints(function, include_extras=True)
    params = list(inspect.signature(function).parameters.values())[1:]
    out = Signature()
    for p in params:
        converter = _converter_for(hints.get(p.name, str))
        has_default = p.default is not inspect.Parameter.empty
        out.params.append(
            Param(
                name=p.name,
                converter=converter,
                required=not has_default and p.kind is not p.VAR_POSITIONAL,
                default=p.default if has_default else None,
                option=p.kind is p.KEYWORD_ONLY,
                variadic=p.kind is p.VAR_POSITIONAL,
                also=tuple(n for m in _metadata(hints.get(p.name, str)) if isinstance(m, Also)
                           for n in m.names),
                private=next(
                    (m for m in _metadata(hints.get(p.name, str)) if isinstance(m, Private)), None
                ),
            )
        )
        if p.kind is p.KEYWORD_ONLY:
            option = out.params[-1]
            KNOWN_OPTIONS.update(
                n.lower() for n in (option.word, *OPTION_NAMES.get(option.word, ()), *option.also)
            )
        if p.kind is p.VAR_POSITIONAL:
            out.params[-1].required = True
    return out


def _metadata(hint: Any) -> list[Any]:
    """The `Annotated` extras of a hint, also inside `X | None`."""
    if typing.get_origin(hint) is Annotated:
        return list(hint.__metadata__)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(hint) for m in _metadata(arg)]
    return []


def _converter_for(hint: Any) -> Converter:
    if typing.get_origin(hint) is Annotated:
        for extra in hint.__metadata__:
            if isinstance(extra, Converter):
                return extra
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _converter_for(inner[0])
    if typing.get_origin(hint) is Literal:
        return Choice(*typing.get_args(hint))
    if hint is int:
        return Integer()
    if hint is float:
        return Number()
    return Word()

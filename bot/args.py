"""Argument conversion: a command's typed signature is its parser and its usage line.

Positional parameters take words in order; keyword-only parameters are `key=value` options
in any order; a `Text` parameter takes the rest of the line. Each type below knows how to
read one word and how to show itself in the usage line. Converters that look things up
(households, `E7`) get the command's context.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from difflib import get_close_matches
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select

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

    def recognises(self, word: str) -> bool:
        """For an optional positional: whether `word` is meant for this parameter, so that
        a failure to read it is an error to report rather than a sign that the parameter was
        left out (and the word belongs to the next one)."""
        return False

    def usage(self, name: str) -> str:
        return f"<{name if self.by_name or not self.placeholder else self.placeholder}>"


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
        try:
            value = float(word.rstrip("°Cc℃"))
        except ValueError:
            raise ArgError("temperature", word=word) from None
        if not 34.0 <= value <= 43.0:
            raise ArgError("temperature", word=word)
        return round(value, 1)


_DURATION = re.compile(r"(\d+)\s*(d|h|m|天|小时|分钟|分)", re.IGNORECASE)
_DURATION_UNITS = {"d": 1440, "天": 1440, "h": 60, "小时": 60, "m": 1, "分钟": 1, "分": 1}


class Duration(Converter):
    placeholder = "duration"

    async def convert(self, ctx: Context, word: str) -> timedelta:
        return parse_duration(word)


def parse_duration(word: str) -> timedelta:
    """`90m`, `3h`, `2d`, `1h30m`."""
    parts = _DURATION.findall(word)
    if not parts or _DURATION.sub("", word).strip():
        raise ArgError("duration", word=word)
    minutes = sum(int(n) * _DURATION_UNITS[u.lower()] for n, u in parts)
    if minutes <= 0:
        raise ArgError("duration", word=word)
    return timedelta(minutes=minutes)


class Day(Converter):
    """`2026-02-10`, `today`, `tomorrow` (今天, 明天), in the community's time zone."""

    placeholder = "date"
    RELATIVE = {"today": 0, "今天": 0, "tomorrow": 1, "明天": 1, "yesterday": -1, "昨天": -1}

    async def convert(self, ctx: Context, word: str) -> date:
        if word.lower() in self.RELATIVE:
            return ctx.today + timedelta(days=self.RELATIVE[word.lower()])
        try:
            return date.fromisoformat(word)
        except ValueError:
            raise ArgError("date", word=word) from None


class TimeOfDay(Converter):
    placeholder = "HH:MM"

    async def convert(self, ctx: Context, word: str) -> time:
        return parse_time(word)


def parse_time(word: str) -> time:
    match = re.fullmatch(r"(\d{1,2})[:：](\d{2})", word)
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ArgError("time", word=word)
    return time(int(match[1]), int(match[2]))


class TimeRange(Converter):
    placeholder = "HH:MM-HH:MM"

    async def convert(self, ctx: Context, word: str) -> tuple[time, time]:
        start, sep, end = word.replace("–", "-").partition("-")
        if not sep:
            raise ArgError("time_range", word=word)
        return parse_time(start), parse_time(end)


class Moment(Converter):
    """A due time: `18:00` (today, or tomorrow if past), `2026-02-10T18:00`, `3h` from now."""

    placeholder = "time"

    async def convert(self, ctx: Context, word: str) -> datetime:
        tz = ZoneInfo(ctx.tz)
        try:
            return ctx.now + parse_duration(word)
        except ArgError:
            pass
        try:
            local = datetime.combine(ctx.today, parse_time(word), tz)
            return local if local > ctx.now else local + timedelta(days=1)
        except ArgError:
            pass
        try:
            parsed = datetime.fromisoformat(word)
        except ValueError:
            raise ArgError("moment", word=word) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


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


class ExistingGrid(GridCode):
    async def convert(self, ctx: Context, word: str) -> models.Grid:
        code = await super().convert(ctx, word)
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


class ExistingHousehold(HouseholdCode):
    """A household of this community's register; unknown ones get the nearest codes."""

    async def convert(self, ctx: Context, word: str) -> models.Household:
        code = await super().convert(ctx, word)
        community = ctx.require_community()
        found = await ctx.db.scalar(
            select(models.Household).where(
                models.Household.community_id == community.id, models.Household.code == code
            )
        )
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


class Item(Converter):
    """`E7`, `e7` or `7`: an item of this community with a per-community number."""

    def __init__(self, prefix: str, model: type) -> None:
        self.prefix = prefix
        self.model = model
        self.placeholder = prefix

    async def convert(self, ctx: Context, word: str) -> Any:
        match = re.fullmatch(rf"(?:{self.prefix})?(\d{{1,9}})", word, re.IGNORECASE)
        if not match:
            raise ArgError("item", word=word, prefix=self.prefix)
        community = ctx.require_community()
        item = await ctx.db.scalar(
            select(self.model).where(
                self.model.community_id == community.id, self.model.number == int(match[1])
            )
        )
        if item is None:
            raise ArgError("unknown_item", code=f"{self.prefix}{int(match[1])}", prefix=self.prefix)
        return item


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
Qty = Annotated[float, Number()]
Celsius = Annotated[float, Temperature()]
Interval = Annotated[timedelta, Duration()]
Date = Annotated[date, Day()]
Clock = Annotated[time, TimeOfDay()]
Hours = Annotated[tuple[time, time], TimeRange()]
When = Annotated[datetime, Moment()]
Zone = Annotated[str, TimeZone()]
Code = Annotated[str, HouseholdCode()]
HouseholdRef = Annotated[models.Household, ExistingHousehold()]
NewGridCode = Annotated[str, GridCode()]
GridRef = Annotated[models.Grid, ExistingGrid()]
PersonRef = Annotated[models.Person, Mention()]
ErrandRef = Annotated[models.Errand, Item("E", models.Errand)]
ShiftRef = Annotated[models.Shift, Item("S", models.Shift)]
KeyPersonRef = Annotated[models.KeyPerson, Item("K", models.KeyPerson)]


async def count_rows(ctx: Context, query) -> int:
    return int(await ctx.db.scalar(select(func.count()).select_from(query.subquery())) or 0)


async def convert(ctx: Context, hint: Any, word: str) -> Any:
    """Reads one word as the given type, as a signature would (for values whose type depends
    on an earlier argument, like `/set <key> <value>`)."""
    return await _converter_for(hint).convert(ctx, word)


# --- the signature parser ---------------------------------------------------------------

_OPTION = re.compile(r"([A-Za-z_]+)=(.*)", re.DOTALL)


@dataclass
class Param:
    name: str
    converter: Converter
    required: bool
    default: Any = None
    option: bool = False
    variadic: bool = False
    private: Private | None = None

    @property
    def rest(self) -> bool:
        return isinstance(self.converter, Rest)

    @property
    def word(self) -> str:
        """The option as typed: a trailing underscore lets `for_` stand for `for=` (PEP 8's
        way round Python keywords)."""
        return self.name.rstrip("_")

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
    params: list[Param] = field(default_factory=list)

    @property
    def positional(self) -> list[Param]:
        return [p for p in self.params if not p.option]

    @property
    def options(self) -> dict[str, Param]:
        return {p.word: p for p in self.params if p.option}

    def private_values(self, values: dict[str, Any]) -> bool:
        """Whether any parameter marked `Private` was given a value."""
        return any(p.private is not None and p.private.applies(values.get(p.name)) for p in self.params)

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
                values[param.name] = await param.converter.convert(ctx, words[index][0])
                index += 1
            except ArgError as error:
                if param.required or param.converter.recognises(words[index][0]):
                    raise
                pending = pending or error
                values[param.name] = param.default
        if index < len(words):
            raise pending or ArgError("unexpected", word=words[index][0])
        return values

    async def _take_options(self, ctx, text, words, values):
        options = self.options
        kept = []
        i = 0
        while i < len(words):
            word = words[i][0]
            match = _OPTION.fullmatch(word)
            if not match or not options:
                kept.append(words[i])
                i += 1
                continue
            key = match[1].lower()
            param = options.get(key)
            if param is None:
                raise ArgError("unknown_option", word=word, options=list(options))
            if param.name in values:
                raise ArgError("duplicate_option", name=key)
            if param.rest:
                # A free-text option runs until the next option.
                j = i + 1
                while j < len(words) and not (
                    (m := _OPTION.fullmatch(words[j][0])) and m[1].lower() in options
                ):
                    j += 1
                value = (match[2] + " " + _slice_rest(text, words[i + 1 : j])).strip()
                i = j
            else:
                value = match[2]
                i += 1
            if not value:
                raise ArgError("missing", name=key)
            values[param.name] = value if param.rest else await param.converter.convert(ctx, value)
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
                private=next(
                    (m for m in _metadata(hints.get(p.name, str)) if isinstance(m, Private)), None
                ),
            )
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

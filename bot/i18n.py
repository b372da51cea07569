"""Rendering replies from Jinja2 templates, in the community's language, for one audience.

Each message is rendered for its reader (`viewer`, bot/privacy.py). Templates mark residents'
names, temperatures and symptoms with the `private` filter, naming what they are about —
`{{ kp.name | private(kp) }}` — and the one rule, `bot.privacy.may_see`, decides; no template
has to know the rule.
"""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib.resources import files
from zoneinfo import ZoneInfo

from jinja2 import Environment, FunctionLoader, StrictUndefined, pass_context

from bot.config import LANGUAGES
from bot.privacy import Viewer, may_see

TEMPLATES = files("templates")


class Renderer:
    def __init__(self, clock=None) -> None:
        self.clock = clock  # times not in this year show their year
        self._envs = {lang: self._environment(lang) for lang in LANGUAGES}

    def render(
        self,
        lang: str,
        name: str,
        /,
        *,
        viewer: Viewer | None = None,
        tz: str = "Asia/Shanghai",
        **values: object,
    ) -> str:
        template = self._envs[lang].get_template(name + ".j2")
        now = self.clock.now() if self.clock is not None else datetime.now(UTC)
        text = template.render(_viewer=viewer, _tz=ZoneInfo(tz), _lang=lang, _now=now, **values)
        return _tidy(text)

    def exists(self, lang: str, name: str) -> bool:
        return TEMPLATES.joinpath(lang, name + ".j2").is_file()

    def summaries(self, lang: str) -> dict[str, str]:
        """One-line help of each command, from templates/<lang>/commands.toml."""
        return _summaries(lang)

    def _environment(self, lang: str) -> Environment:
        env = Environment(
            loader=FunctionLoader(lambda name: _load(lang, name)),
            undefined=StrictUndefined,
            autoescape=False,  # plain text; each transport escapes for its own markup
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        env.globals["may_see"] = _may_see
        env.filters.update(
            private=_private,
            localtime=_localtime,
            localdate=_localdate,
            hm=_hm,
            duration=lambda td: format_duration(td, lang),
            num=_num,
        )
        return env


# A line holding only block tags (`{% for … %}`, `{% endif %}`) leaves no line in the output;
# a line with text keeps its line break even when it ends in a tag.
_TAG_LINE = re.compile(r"^[ \t]*(?:\{%(?:[^%\n]|%(?!\}))*%\}[ \t]*)+\n", re.MULTILINE)


def _load(lang: str, name: str) -> str | None:
    path = TEMPLATES.joinpath(lang, name)
    if not path.is_file():
        return None
    return _TAG_LINE.sub(lambda m: m.group(0)[:-1], path.read_text(encoding="utf-8"))


@cache
def _summaries(lang: str) -> dict[str, str]:
    path = TEMPLATES.joinpath(lang, "commands.toml")
    return tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _tidy(text: str) -> str:
    # Templates are written for readability; collapse the blank lines that loops leave.
    lines = [line.rstrip() for line in text.strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out)


@pass_context
def _private(context, value: object, subject: object, fallback: object = "•••") -> object:
    """`{{ kp.name | private(kp) }}`: the value if this message's reader may see the health
    details of `subject`, else `fallback`."""
    return value if may_see(context.get("_viewer"), subject) else fallback


@pass_context
def _may_see(context, subject: object) -> bool:
    """`{% if may_see(kp) %}…{% endif %}`: a block only for readers of `subject`'s details."""
    return may_see(context.get("_viewer"), subject)


@pass_context
def _localtime(context, value: datetime | None, fmt: str | None = None) -> str:
    """`02-15 18:00` this year; `2099-01-01 00:00` in another year (unless `fmt` is given)."""
    if value is None:
        return "-"
    local = value.astimezone(context["_tz"])
    if fmt is None:
        this_year = context["_now"].astimezone(context["_tz"]).year
        fmt = "%m-%d %H:%M" if local.year == this_year else "%Y-%m-%d %H:%M"
    return local.strftime(fmt)


@pass_context
def _localdate(context, value: datetime | date) -> str:
    if isinstance(value, datetime):
        value = value.astimezone(context["_tz"]).date()
    return value.isoformat()


def _hm(value) -> str:
    return value.strftime("%H:%M")


def _num(value: float | int | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def format_duration(td: timedelta, lang: str = "zh") -> str:
    """`2d 3h`, `3h 5m`, `12m` — or 2天3小时 in Chinese."""
    minutes = max(0, int(td.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    units = ("天", "小时", "分钟") if lang == "zh" else ("d", "h", "m")
    parts = [f"{n}{u}" for n, u in zip((days, hours, mins), units, strict=True) if n]
    if days:
        parts = parts[:2]
    sep = "" if lang == "zh" else " "
    return sep.join(parts) or ("0分钟" if lang == "zh" else "0m")

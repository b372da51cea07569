"""/help <command>: besides the usage line (options by their own names, `temp=`), the other
names each option is declared with in bot/args.py (`体温=`, `温度=`), generated from the
declarations for every command; and a sub-command's other names (`/need 取消`)."""

from __future__ import annotations

import importlib

from bot.args import OPTION_NAMES
from bot.registry import REGISTRY


def declared_options() -> dict[str, dict[str, list[str]]]:
    """Per command group with options: each option's declared names, its own first."""
    importlib.import_module("commands")
    out: dict[str, dict[str, list[str]]] = {}
    for cmd in REGISTRY.commands():
        for p in cmd.signature.params:
            if p.option:
                word = p.name.rstrip("_")
                names = [word, *OPTION_NAMES.get(word, ()), *p.also]
                out.setdefault(cmd.group, {})[f"{cmd.name} {word}"] = names
    return out


def in_chinese(name: str) -> bool:
    return any(not c.isascii() for c in name)


async def test_every_commands_help_lists_every_declared_option_name(community):
    groups = declared_options()
    # The declarations this test walks: options with Chinese names, in several commands.
    assert {"screen", "errand", "household", "watch", "shift", "visitor"} <= set(groups)
    for lang in ("zh", "en"):
        await community.say(":as admin", ":in hq", f"/set lang {lang}", ":in g1chat")
        for group, options in groups.items():
            text = (await community.say(f"/help {group}")).text("g1chat")
            for option, names in options.items():
                for name in names:
                    # English names in both languages (the usage line); Chinese ones too.
                    assert f"{name}=" in text, (lang, option, name)
                    if lang == "zh" and in_chinese(name):
                        assert f"{name}=" in text.split("选项也可写作：", 1)[-1]


async def test_screen_help_in_chinese_and_in_english(community):
    out = await community.say(":in g1chat", "/help screen")
    text = out.text("g1chat")
    assert "[people=<n>] [temp=<°C>]" in text
    assert "选项也可写作：人数=（即 people=）；体温=、温度=（即 temp=）" in text
    out = await community.say(":in hq", "/set lang en", ":in g1chat", "/help 排查")
    text = out.text("g1chat")
    assert "[people=<n>] [temp=<°C>]" in text
    assert "Options also typed as: 人数= (for people=); 体温= / 温度= (for temp=)" in text

    # Options with no other name add no line; a command without options neither.
    out = await community.say("/help supply", "/help claim")
    supply, claim = out.texts("g1chat")
    assert "[category=<category>] [alias=<alias,…>] [unit=<unit>]" in supply
    assert "单位= (for unit=)" in supply and "category=" not in supply.split("typed as")[-1]
    assert "typed as" not in claim


async def test_a_sub_commands_other_names_are_in_its_help(community):
    out = await community.say(":in g1chat", "/help need")
    text = out.text("g1chat")
    assert "/need cancel <N>" in text and "也可写作：/need 取消、/need 撤销" in text
    assert "别名：/求援、/需求" in text

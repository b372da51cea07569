"""/start and /help: what this chat is, and the commands the caller may use here."""

from __future__ import annotations

from bot.api import REGISTRY, Command, Context, Reject, Role, Where, command, usable_here


def _listing(ctx: Context) -> list[dict[str, str]]:
    summaries = ctx.app.renderer.summaries(ctx.lang)
    return [
        {"usage": cmd.usage, "summary": summaries.get(cmd.name, cmd.summary)}
        for cmd in sorted(REGISTRY.commands(), key=lambda c: c.name)
        if usable_here(ctx, cmd)
    ]


@command("start", role=Role.RESIDENT, where=Where.ANY)
async def start(ctx: Context) -> None:
    """What this chat is, and how to begin."""
    ctx.reply("help/start", place=_place(ctx), commands=_listing(ctx))


@command("help", role=Role.RESIDENT, where=Where.ANY, aliases=("帮助",))
async def help_(ctx: Context, command: str = "") -> None:
    """The commands you may use here, or how to use one."""
    name = command
    if not name:
        ctx.reply("help/list", place=_place(ctx), commands=_listing(ctx))
        return
    name = name.lstrip("/").lower()
    group = REGISTRY.groups.get(name) or REGISTRY.groups.get(REGISTRY.aliases.get(name, ""))
    if not group:
        raise Reject("help/unknown", name=name)
    summaries = ctx.app.renderer.summaries(ctx.lang)
    ctx.reply(
        "help/command",
        entries=[
            {"usage": c.usage, "summary": summaries.get(c.name, c.summary), "role": c.role.key,
             "options": _other_names(c), "also": [f"/{c.group} {a}" for a in c.sub_aliases]}
            for c in group.values()
        ],
        aliases=sorted(
            a for a, g in REGISTRY.aliases.items() if g in (name, REGISTRY.aliases.get(name))
        ),
    )


def _other_names(cmd: Command) -> list[dict[str, object]]:
    """The other names of a command's options, as declared in bot/args.py (`体温=` for
    `temp=`): the usage line shows each option by its own name, the help adds these."""
    return [
        {"word": p.word, "names": list(p.other_names)}
        for p in cmd.signature.params
        if p.option and p.other_names
    ]


def _place(ctx: Context) -> dict[str, object]:
    community = ctx.community
    return {
        "direct": ctx.chat.is_direct,
        "community": community.name if community else None,
        "hq": community is not None and ctx.chat.id == community.hq_chat_id,
        "grid": f"{ctx.grid.code} {ctx.grid.name}" if ctx.grid and not ctx.chat.is_direct else None,
        "role": ctx.role.key,
    }

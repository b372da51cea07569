"""Joining a grid, and oneself: /join, /me, /leave."""

from __future__ import annotations

from typing import Annotated

from sqlalchemy import delete, func, select

from bot.api import (
    REGISTRY,
    ArgError,
    Choice,
    Context,
    Converter,
    Flag,
    Reject,
    Role,
    Text,
    Where,
    command,
)
from storage import models
from storage.queries import shift_hours

KINDS = ("cadre", "worker", "sanzhiyifu", "party", "property", "volunteer")
Kind = Annotated[
    str,
    Choice(*KINDS, aliases={
        "干部": "cadre", "机关干部": "cadre", "社区工作者": "worker", "社工": "worker",
        "三支一扶": "sanzhiyifu", "党员": "party", "物业": "property", "志愿者": "volunteer",
    }),
]
PartyFlag = Annotated[bool, Flag("party", "党员")]


@command("join", role=Role.RESIDENT, where=Where.GRID, aliases=("报到", "加入"))
async def join(
    ctx: Context, kind: Kind = "volunteer", party: PartyFlag = False, *, unit: Text = ""
) -> None:
    """Report in to this grid as a member, with your kind, Party membership and work unit."""
    grid = ctx.require_grid()
    membership = await _membership(ctx, grid)
    if membership is None:
        membership = models.Membership(
            community_id=grid.community_id, grid_id=grid.id, person_id=ctx.person.id,
            role="member", created_at=ctx.now,
        )
        ctx.db.add(membership)
    elif membership.joined and (membership.kind, membership.party, membership.unit) == (
        kind, party or kind == "party", unit or membership.unit
    ):
        raise Reject("members/already", grid=grid)
    membership.kind = kind
    membership.party = party or kind == "party"
    membership.unit = unit or membership.unit
    membership.joined = True
    ctx.reply(
        "members/joined", person=ctx.person.label, grid=grid, membership=membership,
        can_dm=ctx.person.dm_chat is not None, transport=ctx.message.transport,
    )


@command("me", role=Role.MEMBER, where=Where.COMMUNITY, aliases=("我的",))
async def me(ctx: Context) -> None:
    """My grid, role, upcoming shifts, claimed errands, watched key persons and hours."""
    person = ctx.person
    membership = await _membership(ctx, ctx.grid) if ctx.grid else None
    shifts = (
        await ctx.db.execute(
            select(models.Shift, models.DutyPost.name, models.SignUp.state)
            .join(models.SignUp, models.SignUp.shift_id == models.Shift.id)
            .join(models.DutyPost, models.DutyPost.id == models.Shift.post_id)
            .where(
                models.SignUp.person_id == person.id,
                models.SignUp.state.in_(("slot", "waiting")),
                models.Shift.ends_at > ctx.now,
            )
            .order_by(models.Shift.starts_at)
            .limit(10)
        )
    ).all()
    errands = (
        await ctx.db.scalars(
            select(models.Errand)
            .where(models.Errand.claimed_by_id == person.id, models.Errand.state == "claimed")
            .order_by(models.Errand.number)
        )
    ).all()
    watched = (
        await ctx.db.execute(
            select(models.KeyPerson, models.Household.code)
            .join(models.Household, models.Household.id == models.KeyPerson.household_id)
            .where(models.KeyPerson.watcher_id == person.id, models.KeyPerson.ended_at.is_(None))
            .order_by(models.KeyPerson.number)
        )
    ).all()
    community = ctx.require_community()
    hours = (await shift_hours(ctx.db, community_id=community.id, person_id=person.id)).get(
        person.id, 0.0
    )
    ctx.reply(
        "members/me", person=person.label, role=ctx.role.key, grid=ctx.grid,
        membership=membership, shifts=shifts, errands=errands, watched=watched, hours=hours,
        community=community, others=[c for c in ctx.communities if c.id != community.id],
    )


@command("leave", role=Role.MEMBER, where=Where.GRID, aliases=("退出",))
async def leave(ctx: Context) -> None:
    """Leave this grid: your claimed errands reopen, your key persons go back to the leaders."""
    grid = ctx.require_grid()
    membership = await _membership(ctx, grid)
    if membership is None:
        raise Reject("members/not_member", grid=grid)
    await ctx.db.execute(delete(models.Membership).where(models.Membership.id == membership.id))
    handed = await hand_back_work(ctx, ctx.person, grid)
    ctx.reply("members/left", person=ctx.person.label, grid=grid, **handed)


async def hand_back_work(ctx: Context, person: models.Person, grid: models.Grid) -> dict[str, int]:
    """Hands a person's work in a grid back (every domain's `@hand_back`), once they no
    longer work there; returns what was handed back, counted, for the reply."""
    claimed = await ctx.db.scalar(
        select(func.count()).select_from(models.Errand).where(
            models.Errand.grid_id == grid.id, models.Errand.claimed_by_id == person.id,
            models.Errand.state == "claimed",
        )
    )
    watching = await ctx.db.scalar(
        select(func.count()).select_from(models.KeyPerson).where(
            models.KeyPerson.grid_id == grid.id, models.KeyPerson.watcher_id == person.id,
            models.KeyPerson.ended_at.is_(None),
        )
    )
    for hand_back in REGISTRY.hand_backs:
        await hand_back(ctx, person, grid)
    return {"claimed": claimed or 0, "watching": watching or 0}


class MyCommunity(Converter):
    """One of the caller's communities, by name (or the start of it) or number."""

    placeholder = "community"

    async def convert(self, ctx: Context, word: str) -> models.Community:
        ids = ctx.standing.communities()
        mine = list(
            await ctx.db.scalars(select(models.Community).where(models.Community.id.in_(ids)))
        )
        key = word.strip().lower()
        found = (
            [c for c in mine if c.name.lower() == key or str(c.id) == key]
            or [c for c in mine if c.name.lower().startswith(key)]
        )
        if len(found) != 1:
            raise ArgError("community", word=word, names=[c.name for c in mine])
        return found[0]


@command("use", role=Role.RESIDENT, where=Where.DIRECT, aliases=("切换社区",))
async def use(ctx: Context, community: Annotated[models.Community, MyCommunity()]) -> None:
    """For a person in several communities: which one this direct chat acts in."""
    ctx.person.current_community_id = community.id
    ctx.community = community
    ctx.reply("members/using", community=community)


async def _membership(ctx: Context, grid: models.Grid) -> models.Membership | None:
    return await ctx.db.scalar(
        select(models.Membership).where(
            models.Membership.grid_id == grid.id, models.Membership.person_id == ctx.person.id
        )
    )

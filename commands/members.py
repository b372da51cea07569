"""Joining a grid, and oneself: /join, /me, /leave."""

from __future__ import annotations

from typing import Annotated

from sqlalchemy import delete, func, select

from bot.api import Choice, Context, Flag, Reject, Role, Text, Where, command
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
    )


@command("leave", role=Role.MEMBER, where=Where.GRID, aliases=("退出",))
async def leave(ctx: Context) -> None:
    """Leave this grid."""
    grid = ctx.require_grid()
    membership = await _membership(ctx, grid)
    if membership is None:
        raise Reject("members/not_member", grid=grid)
    await ctx.db.execute(delete(models.Membership).where(models.Membership.id == membership.id))
    claimed = await ctx.db.scalar(
        select(func.count()).select_from(models.Errand).where(
            models.Errand.grid_id == grid.id, models.Errand.claimed_by_id == ctx.person.id,
            models.Errand.state == "claimed",
        )
    )
    watching = await ctx.db.scalar(
        select(func.count()).select_from(models.KeyPerson).where(
            models.KeyPerson.grid_id == grid.id, models.KeyPerson.watcher_id == ctx.person.id,
            models.KeyPerson.ended_at.is_(None),
        )
    )
    ctx.reply("members/left", person=ctx.person.label, grid=grid, claimed=claimed, watching=watching)


async def _membership(ctx: Context, grid: models.Grid) -> models.Membership | None:
    return await ctx.db.scalar(
        select(models.Membership).where(
            models.Membership.grid_id == grid.id, models.Membership.person_id == ctx.person.id
        )
    )

"""Publicity (seed point 6): announcements to every grid chat, and praise of model workers.

/announce shows the sender a preview (and which grids have no chat to receive it) before it
goes out; /praise records a commendation, posts it in the person's grid chat and tells them;
the day's praises are a section of each grid's digest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from bot.api import (
    Actions,
    Context,
    PersonRef,
    Reject,
    Role,
    Text,
    Where,
    command,
    digest_section,
)
from storage import models
from storage.queries import grid_chats

GRID_ROLES = ("member", "leader")


# --- /announce --------------------------------------------------------------------------


@command("announce", role=Role.SECRETARY, where=Where.HQ, aliases=("公告",), confirmable=True)
async def announce(ctx: Context, text: Text) -> None:
    """Post an announcement to every grid chat of the community, after a preview."""
    community = ctx.require_community()
    rows = await _grid_chats(ctx, community)
    if not rows:
        raise Reject("publicity/no_grid_chats")
    unlinked = await _unlinked_grids(ctx, community)
    # The preview: what will be posted, where, and which grids it cannot reach.
    ctx.confirm("publicity/preview", community=community, text=text, chats=len(rows),
                grids=_codes(rows), unlinked=unlinked, button=ctx.render("publicity/send_button"))
    ctx.db.add(models.Announcement(
        community_id=community.id, text=text, by_id=ctx.person.id, at=ctx.now
    ))
    for chat, _ in rows:
        ctx.post(chat, "publicity/announcement", pin=True, community=community, text=text)
    ctx.reply("publicity/announced", chats=len(rows), grids=_codes(rows), unlinked=unlinked)


def _codes(rows: list[tuple[models.Chat, str]]) -> list[str]:
    return list(dict.fromkeys(code for _, code in rows))


async def _grid_chats(ctx: Context, community: models.Community) -> list[tuple[models.Chat, str]]:
    """Every chat linked to a grid of the community, with its grid's code, in code order
    (the code alone: a thousand grids need not be loaded to be named)."""
    rows = await ctx.db.execute(
        select(models.Chat, models.Grid.code)
        .join(models.Grid, models.Grid.id == models.Chat.grid_id)
        .where(models.Chat.community_id == community.id)
        .order_by(models.Grid.code, models.Chat.id)
    )
    return [(chat, code) for chat, code in rows.all()]


async def _unlinked_grids(ctx: Context, community: models.Community) -> list[models.Grid]:
    """The community's grids with no chat linked: an announcement cannot reach them."""
    linked = select(models.Chat.grid_id).where(models.Chat.grid_id.is_not(None))
    return list(
        (
            await ctx.db.scalars(
                select(models.Grid)
                .where(models.Grid.community_id == community.id, models.Grid.id.not_in(linked))
                .order_by(models.Grid.code)
            )
        ).all()
    )


# --- /praise ----------------------------------------------------------------------------


@command("praise", role=Role.LEADER, where=Where.COMMUNITY, aliases=("表扬",))
async def praise(ctx: Context, person: PersonRef, reason: Text) -> None:
    """Commend a member: posted in their grid chat and told to them (secretary, leader)."""
    community = ctx.require_community()
    if person.id == ctx.person.id:
        raise Reject("publicity/praise_self")
    grid = await _praised_grid(ctx, community, person)
    ctx.db.add(models.Praise(
        community_id=community.id, grid_id=grid.id, person_id=person.id, reason=reason,
        by_id=ctx.person.id, at=ctx.now,
    ))
    chats = await grid_chats(ctx.db, grid.id)
    values: dict[str, Any] = {  # template values
        "person": person.label, "grid": grid, "reason": reason, "by": ctx.person.label,
    }
    for chat in chats:
        if chat.id == ctx.chat.id:
            ctx.reply("publicity/praise", **values)
        else:
            ctx.post(chat, "publicity/praise", **values)
    if all(chat.id != ctx.chat.id for chat in chats):
        ctx.reply("publicity/praised", **values, chats=len(chats))
    if person.external_id is not None:  # someone named before they ever spoke has no chat yet
        origin = next((c for c in chats if c.transport == person.transport), ctx.chat)
        ctx.tell(person, "publicity/praise_told", origin=origin, **values)


async def _praised_grid(
    ctx: Context, community: models.Community, person: models.Person
) -> models.Grid:
    """The grid the praise belongs to: the person must be a member of a grid (a leader's own
    grid, for a leader); this chat's grid first when they belong to several."""
    grids = (
        await ctx.db.scalars(
            select(models.Grid)
            .join(models.Membership, models.Membership.grid_id == models.Grid.id)
            .where(
                models.Membership.community_id == community.id,
                models.Membership.person_id == person.id,
                models.Membership.role.in_(GRID_ROLES),
            )
            .order_by(models.Membership.id)
        )
    ).all()
    if ctx.role < Role.SECRETARY:
        grids = [g for g in grids if ctx.grid is not None and g.id == ctx.grid.id]
    if not grids:
        raise Reject("publicity/praise_not_member", person=person.label,
                     grid=ctx.grid if ctx.role < Role.SECRETARY else None)
    return next((g for g in grids if ctx.grid is not None and g.id == ctx.grid.id), grids[0])


# --- the digest -------------------------------------------------------------------------


@digest_section("praise", order=70, template="publicity/digest")
async def digest(actions: Actions, grid: models.Grid, since: datetime, until: datetime) -> dict:
    """The grid's praises of the day: who, and why. Nothing unfinished: no urgency."""
    rows = (
        await actions.db.execute(
            select(models.Person, models.Praise.reason)
            .join(models.Praise, models.Praise.person_id == models.Person.id)
            .where(models.Praise.grid_id == grid.id, models.Praise.at > since,
                   models.Praise.at <= until)
            .order_by(models.Praise.at, models.Praise.id)
        )
    ).all()
    return {"praises": [(person.label, reason) for person, reason in rows], "urgency": 0}

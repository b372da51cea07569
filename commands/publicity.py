"""Publicity: announcements to every grid chat of the community."""

from __future__ import annotations

from sqlalchemy import select

from bot.api import Context, Reject, Role, Text, Where, command
from storage import models


@command("announce", role=Role.SECRETARY, where=Where.HQ, aliases=("公告",))
async def announce(ctx: Context, text: Text) -> None:
    """Post an announcement to every grid chat of the community, pinned where possible."""
    community = ctx.require_community()
    rows = (
        await ctx.db.execute(
            select(models.Chat, models.Grid.code)
            .join(models.Grid, models.Grid.id == models.Chat.grid_id)
            .where(models.Chat.community_id == community.id)
            .order_by(models.Grid.code, models.Chat.id)
        )
    ).all()
    if not rows:
        raise Reject("publicity/no_grid_chats")
    ctx.db.add(models.Announcement(community_id=community.id, text=text, by_id=ctx.person.id, at=ctx.now))
    for chat, _ in rows:
        ctx.post(chat, "publicity/announcement", pin=True, community=community, text=text)
    ctx.reply("publicity/announced", chats=len(rows), grids=list(dict.fromkeys(code for _, code in rows)))

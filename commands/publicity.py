"""Publicity: announcements to every grid chat of the community."""

from __future__ import annotations

from bot.api import Context, Reject, Role, Text, Where, command
from storage import models
from storage.queries import community_grid_chats


@command("announce", role=Role.SECRETARY, where=Where.HQ, aliases=("公告",))
async def announce(ctx: Context, text: Text) -> None:
    """Post an announcement to every grid chat of the community, pinned where possible."""
    community = ctx.require_community()
    rows = await community_grid_chats(ctx.db, community.id)
    if not rows:
        raise Reject("publicity/no_grid_chats")
    ctx.db.add(models.Announcement(community_id=community.id, text=text, by_id=ctx.person.id, at=ctx.now))
    for chat, _ in rows:
        ctx.post(chat, "publicity/announcement", pin=True, community=community, text=text)
    ctx.reply("publicity/announced", chats=len(rows), grids=list(dict.fromkeys(grid.code for _, grid in rows)))

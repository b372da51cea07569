"""The daily digest: every evening the secretary's HQ chat gets everything still unfinished,
grid by grid, most urgent first; each grid chat gets its own grid's part. `/digest` shows
the same on demand.

Each domain adds its own section; this module knows none of them.

The section contract
--------------------
A domain declares a section next to the data it owns:

    @digest_section("errands", order=30, template="errands/digest")
    async def section(
        actions: Actions, grid: models.Grid, since: datetime, until: datetime
    ) -> dict:
        ...
        return {"urgency": len(open_errands), "errands": open_errands}

- It gathers ONE grid's part. `actions` is the job's or command's Actions (`actions.db`,
  `actions.community`, `actions.now`, `actions.local()`); it only reads, never writes or
  queues messages.
- `since` and `until` are aware UTC times: `until` is now, `since` is 24 h before the
  digest's due time (the previous daily digest). "Of the day" and "of the last 24 h" mean
  `since < t <= until`; ages and overdue checks count to `until`.
- It returns the values of its template, including `urgency`: an int, 0 when nothing is
  unfinished, higher for more (or more serious) open items. A grid's urgency is the sum
  of its sections'; the most urgent grid comes first.
- `template` (`<domain>/digest`, in templates/zh and templates/en) renders that grid's
  section. It gets the returned values plus `grid`, `since` and `until`. It starts with a
  one-line heading that names the section; an empty section says so in one line.
  Blank lines separate sections (long digests are split there to fit a transport's
  message size), so any blank line inside a section is dropped.
- Privacy: the values may hold residents' names and temperatures; the template marks them
  with the `private` filter, naming what each is about (`{{ kp.name | private(kp) }}`),
  and the one rule, `bot.privacy.may_see`, decides for each chat's reader. A grid chat's
  part therefore never shows them; a direct chat shows them to those who may see them.
- A section that raises is logged and shown as unavailable; the rest of the digest goes out.

Community-wide sections: `@digest_section(..., scope="community")` declares a section that is
gathered once for the whole community, `async def f(actions, grids, since, until) -> dict`
(`grids` in code order), and shown only in the whole-community digest (the HQ chat's, and a
secretary's `/digest`), after the grids; never in a grid chat's part. Its template gets the
returned values plus `grids`, `since` and `until`. For figures that compare grids (e.g. the
welfare of front-line workers, aggregated per grid).

Exactly once: the daily digest of (community, local date) is recorded in `DigestSent` in
the same transaction that queues it, so neither a restart nor a second bot instance on
the same database sends it again. One missed while the bot was down goes out (marked
late) when it comes back: only the most recent one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.api import REGISTRY, Actions, Context, JobContext, Role, Where, command, job, on
from bot.privacy import Viewer
from bot.registry import DigestSection
from storage import models
from storage.queries import community_grid_chats

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
# A digest sent later than this after its time says it is late (sent after downtime).
LATE_AFTER = timedelta(minutes=5)


@dataclass
class GridPart:
    """One grid's sections, as gathered: (section, template values or None if it failed)."""

    grid: models.Grid
    sections: list[tuple[DigestSection, dict | None]] = field(default_factory=list)

    @property
    def urgency(self) -> int:
        return sum(values["urgency"] for _, values in self.sections if values)


# --- /digest ----------------------------------------------------------------------------


@command("digest", role=Role.LEADER, where=Where.COMMUNITY, aliases=("汇总",))
async def digest(ctx: Context) -> None:
    """The digest now: the whole community for the secretary, the own grid for a leader."""
    community = ctx.require_community()
    # The contract gives the secretary the whole community and a leader only their grid.
    if ctx.role >= Role.SECRETARY:
        grids, scope = await _grids(ctx, community), None
    else:
        scope = ctx.require_grid()
        grids = [scope]
    parts = await gather(ctx, grids, since=ctx.now - DAY, until=ctx.now)
    overview = (
        [] if scope else await gather_community(ctx, grids, since=ctx.now - DAY, until=ctx.now)
    )
    _post(ctx, ctx.chat, parts, overview, scope=scope, on_demand=True, day=ctx.today, late=False,
          due=ctx.now)


# --- the daily digest -------------------------------------------------------------------


async def send_due(jc: JobContext, community_id: int) -> None:
    """Sends the community's most recent daily digest unless it was sent already."""
    community = await jc.db.get(models.Community, community_id)
    if community is None:
        return
    jc.community = community
    due = last_due_time(community, jc.now)
    if due < community.created_at:
        return  # the community did not exist yet at that time
    late = jc.now - due > LATE_AFTER
    if not await _record_sent(jc, community, due.date(), late):
        return
    grids = await _grids(jc, community)
    parts = await gather(jc, grids, since=due - DAY, until=jc.now)
    header = {"on_demand": False, "day": due.date(), "late": late, "due": due}
    hq = await jc.db.get(models.Chat, community.hq_chat_id) if community.hq_chat_id else None
    if hq is not None:
        overview = await gather_community(jc, grids, since=due - DAY, until=jc.now)
        _post(jc, hq, parts, overview, scope=None, **header)
    for chat, _ in await community_grid_chats(jc.db, community.id):
        part = next((p for p in parts if p.grid.id == chat.grid_id), None)
        if part is not None:
            _post(jc, chat, [part], [], scope=part.grid, **header)


def last_due_time(community: models.Community, now: datetime) -> datetime:
    """The latest daily digest time at or before `now`, in the community's time zone."""
    tz = ZoneInfo(community.tz)
    local = now.astimezone(tz)
    due = datetime.combine(local.date(), _digest_time(community), tz)
    if due > local:
        due = datetime.combine(local.date() - DAY, _digest_time(community), tz)
    return due


async def _record_sent(jc: JobContext, community: models.Community, day: date, late: bool) -> bool:
    """Marks the digest of `day` as sent; False if it was already (maybe by another instance:
    the primary key (community, day) lets only one insert win)."""
    if await jc.db.get(models.DigestSent, (community.id, day)) is not None:
        return False
    try:
        async with jc.db.begin_nested():
            jc.db.add(
                models.DigestSent(community_id=community.id, day=day, sent_at=jc.now, late=late)
            )
    except IntegrityError:
        return False
    return True


# --- gathering and rendering ------------------------------------------------------------


async def gather(
    actions: Actions, grids: list[models.Grid], *, since: datetime, until: datetime
) -> list[GridPart]:
    """Every registered section for each grid; the most urgent grid first."""
    parts = []
    for grid in grids:
        part = GridPart(grid)
        for section in REGISTRY.digest_sections:
            if section.scope != "grid":
                continue
            values = await _section_values(actions, section, grid, since, until)
            part.sections.append((section, values))
        parts.append(part)
    return sorted(parts, key=lambda p: -p.urgency)  # stable: equal urgency keeps grid order


async def gather_community(
    actions: Actions, grids: list[models.Grid], *, since: datetime, until: datetime
) -> list[tuple[DigestSection, dict | None]]:
    """Every community-wide section, gathered once over all the grids."""
    return [
        (section, await _section_values(actions, section, grids, since, until))
        for section in REGISTRY.digest_sections
        if section.scope == "community"
    ]


async def _section_values(
    actions: Actions, section: DigestSection, grid, since: datetime, until: datetime
) -> dict | None:
    try:
        # A savepoint, so that a failed query does not spoil the digest's transaction.
        async with actions.db.begin_nested():
            values = dict(await section.function(actions, grid, since, until))
            values["urgency"] = int(values["urgency"])
            return values
    except Exception:
        where = getattr(grid, "code", "(community)")
        log.exception("digest section %s failed for grid %s", section.name, where)
        return None


def _post(
    actions: Actions,
    chat: models.Chat,
    parts: list[GridPart],
    overview: list[tuple[DigestSection, dict | None]],
    **header,
) -> None:
    """Queues the digest for `chat`, each section rendered for that chat's reader;
    `overview` holds the community-wide sections (whole-community digests only)."""
    viewer = actions.chat_viewer(chat)  # /digest in a direct chat: its caller
    grids = [
        {"grid": part.grid, "sections": [_render_section(actions, s, v, viewer, grid=part.grid)
                                         for s, v in part.sections]}
        for part in parts
    ]
    everywhere = [p.grid for p in parts]
    community_sections = [
        _render_section(actions, s, v, viewer, grids=sorted(everywhere, key=lambda g: g.code))
        for s, v in overview
    ]
    actions.post(chat, "digest/digest", community=actions.community, grids=grids,
                 community_sections=community_sections, **header)


def _render_section(
    actions: Actions, section: DigestSection, values: dict | None, viewer: Viewer | None,
    **where,
) -> str:
    if values is None:
        return actions.render("digest/section_failed", name=section.name)
    text = actions.render(section.template, viewer=viewer, **where, **values)
    # Blank lines are where a long digest may be split: keep each section in one piece.
    return "\n".join(line for line in text.splitlines() if line.strip())


async def _grids(actions: Actions, community: models.Community) -> list[models.Grid]:
    return list(
        await actions.db.scalars(
            select(models.Grid)
            .where(models.Grid.community_id == community.id)
            .order_by(models.Grid.code)
        )
    )


# --- scheduling -------------------------------------------------------------------------


def _digest_time(community: models.Community) -> time:
    return time.fromisoformat(community.digest_time)


def schedule(app: App, community: models.Community) -> None:
    """(Re)schedules the community's daily digest at its digest time in its time zone."""
    app.scheduler.daily(
        f"digest:{community.id}", _digest_time(community), community.tz,
        partial(app.run_job, partial(send_due, community_id=community.id)),
    )


@job(every=timedelta(minutes=5), catch_up=True)
async def sync_schedules(jc: JobContext) -> None:
    """Follows digest times changed through another bot instance on the same database (the
    `community_changed` hook only reaches the instance where /set ran). When it runs does
    not matter, so a jump of the manual clock runs it once (bot/scheduler.py)."""
    for community in (await jc.db.scalars(select(models.Community))).all():
        schedule(jc.app, community)


@on("startup")
async def schedule_all(app: App) -> None:
    """Schedules every community's digest, and sends the last one if it was missed while down."""
    async with app.db.transaction() as db:
        communities = (
            await db.scalars(select(models.Community).order_by(models.Community.id))
        ).all()
    for community in communities:
        schedule(app, community)
        await app.run_job(partial(send_due, community_id=community.id))


@on("community_changed")
async def reschedule(app: App, community_id: int) -> None:
    """A community was created, or its digest time or time zone changed (after commit)."""
    async with app.db.transaction() as db:
        community = await db.get(models.Community, community_id)
    if community is not None:
        schedule(app, community)

"""Errands, "you order, I deliver" (seed point 5): anyone in a grid chat posts a need, a
member claims it and completes it. A claim is one conditional UPDATE, so of many people
claiming at once exactly one wins; a claim left too long is reminded, then reopened.

/errand, /claim, /done, /release, /cancel, /errands; the claim sweep; the digest section.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bot.api import (
    Actions,
    Choice,
    Context,
    ErrandRef,
    HouseholdRef,
    JobContext,
    Reject,
    Role,
    Text,
    When,
    Where,
    command,
    digest_section,
    hand_back,
    job,
)
from storage import models
from storage.queries import grid_chats, load, next_number

ACTIVE = ("open", "claimed")
LIST_LIMIT = 30
SWEEP_EVERY = timedelta(minutes=5)

# /claim's one write, built once with the values bound at each claim: the errand, if still
# open, becomes the caller's; the row comes back as claimed, or nothing if the claim lost.
CLAIM = (
    update(models.Errand)
    .where(models.Errand.id == bindparam("errand_id"), models.Errand.state == "open")
    .values(state="claimed", claimed_by_id=bindparam("person_id"), claimed_at=bindparam("now"))
    .returning(models.Errand)
    .execution_options(synchronize_session=False, populate_existing=True)
)

Which = Annotated[
    str, Choice("open", "mine", "all", aliases={"待认领": "open", "我的": "mine", "全部": "all"})
]


@dataclass
class Line:
    """An errand as shown: household code instead of a resident, its claimer, its age."""

    errand: models.Errand
    household: str | None
    claimer: str | None
    age: timedelta
    overdue: bool


# --- commands ---------------------------------------------------------------------------


@command("errand", role=Role.RESIDENT, where=Where.GRID, aliases=("代办", "下单"))
async def errand(
    ctx: Context, text: Text, *, for_: HouseholdRef | None = None, by: When | None = None
) -> None:
    """Post an errand for the grid's volunteers (for= a household, by= a due time)."""
    grid = ctx.require_grid()
    if by is not None and by <= ctx.now:
        raise Reject("errands/due_past", due=by)
    posted = models.Errand(
        community_id=grid.community_id, number=await next_number(ctx.db, grid.community_id, "E"),
        grid_id=grid.id, text=text, household_id=for_.id if for_ else None, due_at=by,
        state="open", posted_by_id=ctx.person.id, posted_at=ctx.now, done_note="",
    )
    ctx.db.add(posted)  # written with the command's other rows when it ends
    ctx.ref(f"E{posted.number}")
    line = await _describe(ctx.db, posted, ctx.now)
    ctx.post(ctx.chat, "errands/posted", **_claimable(ctx, posted), line=line)


@command("claim", role=Role.MEMBER, where=Where.GRID, aliases=("认领", "接单"))
async def claim(ctx: Context, errand: ErrandRef) -> None:
    """Take an errand; of several people claiming at once exactly one wins."""
    await _require_this_grid(ctx, errand)
    # One conditional UPDATE, not read-then-write: the database lets one claim through. The
    # winner's UPDATE returns the row as claimed, which refreshes `errand`.
    won = await ctx.db.scalar(
        CLAIM, {"errand_id": errand.id, "person_id": ctx.person.id, "now": ctx.now}
    )
    if won is None:
        await ctx.db.refresh(errand)
        raise await _unavailable(ctx, errand)
    assert errand.claimed_at is not None  # just set by the claim
    ctx.record(
        "errands", errand.id,
        before={"state": "open", "claimed_by_id": None, "claimed_at": None},
        after={"state": "claimed", "claimed_by_id": ctx.person.id,
               "claimed_at": errand.claimed_at.isoformat()},
    )
    ctx.ref(f"E{errand.number}")
    window = timedelta(minutes=ctx.require_community().claim_minutes)
    ctx.reply("errands/claimed", errand=errand, claimer=ctx.person.label, window=window)
    await _tell_poster(ctx, errand, "errands/told_claimed", claimer=ctx.person.label)


@command("done", role=Role.MEMBER, where=Where.GRID, aliases=("完成",))
async def done(ctx: Context, errand: ErrandRef, note: Text = "") -> None:
    """Complete an errand you claimed (a leader may complete anyone's)."""
    await _require_claimed(ctx, errand, "done")
    errand.state = "done"
    errand.done_at = errand.closed_at = ctx.now
    errand.done_note = note
    ctx.ref(f"E{errand.number}")
    claimer = await _claimer(ctx.db, errand)
    ctx.reply("errands/done", errand=errand, claimer=claimer.label, by=ctx.person.label)
    await _tell_poster(ctx, errand, "errands/told_done", claimer=claimer.label)


@command("release", role=Role.MEMBER, where=Where.GRID, aliases=("放弃", "释放"))
async def release(ctx: Context, errand: ErrandRef) -> None:
    """Give a claimed errand back to open (the claimer, or a leader)."""
    await _require_claimed(ctx, errand, "release")
    claimer = await _claimer(ctx.db, errand)
    _reopen(errand)
    ctx.ref(f"E{errand.number}")
    line = await _describe(ctx.db, errand, ctx.now)
    ctx.post(ctx.chat, "errands/reopened", **_claimable(ctx, errand), line=line,
             by=ctx.person.label)
    if claimer.id != ctx.person.id:
        ctx.tell(claimer, "errands/told_released", origin=ctx.chat, errand=errand,
                 by=ctx.person.label)


@command("cancel", role=Role.RESIDENT, where=Where.GRID, aliases=("取消",))
async def cancel(ctx: Context, errand: ErrandRef) -> None:
    """Cancel an errand (the poster, or a leader)."""
    await _require_this_grid(ctx, errand)
    await ctx.db.refresh(errand, with_for_update=True)
    if errand.state not in ACTIVE:
        raise Reject("errands/closed", errand=errand)
    if errand.posted_by_id != ctx.person.id and ctx.role < Role.LEADER:
        raise Reject("errands/not_poster", errand=errand)
    claimer = await _claimer(ctx.db, errand) if errand.claimed_by_id else None
    errand.state = "cancelled"
    errand.closed_at = ctx.now
    ctx.ref(f"E{errand.number}")
    ctx.reply("errands/cancelled", errand=errand, by=ctx.person.label)
    if claimer is not None and claimer.id != ctx.person.id:
        ctx.tell(claimer, "errands/told_cancelled", origin=ctx.chat, errand=errand)


@command("errands", role=Role.RESIDENT, where=Where.GRID, aliases=("代办列表",))
async def errands(ctx: Context, which: Which | None = None) -> None:
    """This grid's errands: not yet done (default), open, mine, or all."""
    grid = ctx.require_grid()
    conditions = [models.Errand.grid_id == grid.id]
    if which == "open":
        conditions.append(models.Errand.state == "open")
    elif which != "all":
        conditions.append(models.Errand.state.in_(ACTIVE))
    if which == "mine":
        conditions.append(or_(
            models.Errand.claimed_by_id == ctx.person.id,
            models.Errand.posted_by_id == ctx.person.id,
        ))
    total = await _count(ctx.db, *conditions)
    lines = await _lines(ctx.db, ctx.now, *conditions, newest_first=which == "all")
    ctx.reply("errands/list", which=which, lines=lines, total=total, grid=grid)


@hand_back
async def hand_back_errands(actions: Actions, person: models.Person, grid: models.Grid) -> None:
    """Errands a person had claimed in a grid they no longer work in open again, announced
    in the grid's chat as if newly posted."""
    claimed = (
        await actions.db.scalars(
            select(models.Errand)
            .where(models.Errand.grid_id == grid.id, models.Errand.claimed_by_id == person.id,
                   models.Errand.state == "claimed")
            .order_by(models.Errand.number)
            .with_for_update()
        )
    ).all()
    chats = await grid_chats(actions.db, grid.id) if claimed else []
    for errand in claimed:
        _reopen(errand)
        line = await _describe(actions.db, errand, actions.now)
        for chat in chats:
            actions.post(chat, "errands/reopened", **_claimable(actions, errand), line=line,
                         by=None, left=person.label)


# --- the claim window -------------------------------------------------------------------


async def next_claim_due(jc: JobContext) -> datetime | None:
    """When the claim sweep next has work: a claim's window running out unreminded, or twice
    the window running out (the manual clock's `due`, bot/scheduler.py)."""
    rows = await jc.db.execute(
        select(models.Errand.claimed_at, models.Errand.reminded_at, models.Community.claim_minutes)
        .join(models.Community, models.Community.id == models.Errand.community_id)
        .where(models.Errand.state == "claimed", models.Errand.claimed_at.is_not(None))
    )
    return min(
        (claimed + timedelta(minutes=minutes) * (1 if reminded is None else 2)
         for claimed, reminded, minutes in rows.all() if claimed is not None),
        default=None,
    )


@job(every=SWEEP_EVERY, due=next_claim_due)
async def sweep_claims(jc: JobContext) -> None:
    """A claim past the community's claim window is reminded once by direct message; past
    twice the window it goes back to open and is announced again. Marks make reruns harmless."""
    communities = (
        await jc.db.scalars(
            select(models.Community).where(
                models.Community.id.in_(
                    select(models.Errand.community_id).where(models.Errand.state == "claimed")
                )
            )
        )
    ).all()
    for community in communities:
        await _sweep_community(dataclasses.replace(jc, community=community), community)


async def _sweep_community(jc: JobContext, community: models.Community) -> None:
    """`jc` speaks for `community`."""
    window = timedelta(minutes=community.claim_minutes)
    for errand in await _claims_since(jc, community, jc.now - 2 * window):
        claimer = await _claimer(jc.db, errand)
        _reopen(errand)
        chats = await grid_chats(jc.db, errand.grid_id)
        line = await _describe(jc.db, errand, jc.now)
        for chat in chats:
            jc.post(chat, "errands/reopened", **_claimable(jc, errand), line=line, by=None)
        jc.tell(claimer, "errands/told_released", origin=_origin(chats, claimer), errand=errand,
                by=None)
    for errand in await _claims_since(jc, community, jc.now - window, unreminded=True):
        errand.reminded_at = jc.now
        claimer = await _claimer(jc.db, errand)
        chats = await grid_chats(jc.db, errand.grid_id)
        assert errand.claimed_at is not None  # selected by it
        jc.tell(claimer, "errands/reminder", origin=_origin(chats, claimer), errand=errand,
                window=window, reopens_at=errand.claimed_at + 2 * window)


async def _claims_since(
    jc: JobContext, community: models.Community, cutoff: datetime, *, unreminded: bool = False
) -> list[models.Errand]:
    """The community's errands claimed at or before `cutoff`, locked against a concurrent
    /done (PostgreSQL re-checks the state once the lock is free)."""
    query = select(models.Errand).where(
        models.Errand.community_id == community.id,
        models.Errand.state == "claimed",
        models.Errand.claimed_at <= cutoff,
    )
    if unreminded:
        query = query.where(models.Errand.reminded_at.is_(None))
    return list((await jc.db.scalars(query.order_by(models.Errand.number).with_for_update())).all())


# --- the digest -------------------------------------------------------------------------


@digest_section("errands", order=30, template="errands/digest")
async def digest(actions: Actions, grid: models.Grid, since: datetime, until: datetime) -> dict:
    """One grid's errands open or claimed but not done, oldest first, overdue marked."""
    unfinished = (models.Errand.grid_id == grid.id, models.Errand.state.in_(ACTIVE))
    lines = await _lines(actions.db, until, *unfinished)
    total = await _count(actions.db, *unfinished)
    overdue = await _count(actions.db, *unfinished, models.Errand.due_at < until)
    completed = await _count(
        actions.db, models.Errand.grid_id == grid.id, models.Errand.state == "done",
        models.Errand.done_at > since, models.Errand.done_at <= until,
    )
    # Every unfinished errand counts; one past its due time counts three times.
    return {"lines": lines, "total": total, "overdue": overdue, "completed": completed,
            "urgency": total + 2 * overdue}


# --- helpers ----------------------------------------------------------------------------


async def _require_this_grid(ctx: Context, errand: models.Errand) -> None:
    """Errands are handled in their own grid's chat, where its volunteers and leader are."""
    if errand.grid_id != ctx.require_grid().id:
        grid = await ctx.db.get(models.Grid, errand.grid_id)
        raise Reject("errands/other_grid", errand=errand, grid=grid)


async def _require_claimed(ctx: Context, errand: models.Errand, verb: str) -> None:
    """For /done and /release: the errand is claimed, and by the caller unless a leader acts.
    The row stays locked until the command commits."""
    await _require_this_grid(ctx, errand)
    await ctx.db.refresh(errand, with_for_update=True)
    if errand.state == "open":
        raise Reject("errands/not_claimed", errand=errand)
    if errand.state != "claimed":
        raise Reject("errands/closed", errand=errand)
    if errand.claimed_by_id != ctx.person.id and ctx.role < Role.LEADER:
        claimer = await _claimer(ctx.db, errand)
        raise Reject("errands/not_claimer", errand=errand, claimer=claimer.label, verb=verb)


async def _unavailable(ctx: Context, errand: models.Errand) -> Reject:
    """Why a claim lost: someone has it (who), or it is closed."""
    if errand.state == "claimed":
        claimer = await _claimer(ctx.db, errand)
        return Reject("errands/taken", errand=errand, claimer=claimer.label,
                      mine=claimer.id == ctx.person.id)
    return Reject("errands/closed", errand=errand)


async def _claimer(db: AsyncSession, errand: models.Errand) -> models.Person:
    """Who holds a claimed errand."""
    if errand.claimed_by_id is None:
        raise LookupError(f"errand {errand.id} is {errand.state} without a claimer")
    return await load(db, models.Person, errand.claimed_by_id)


def _reopen(errand: models.Errand) -> None:
    errand.state = "open"
    errand.claimed_by_id = errand.claimed_at = errand.reminded_at = None


def _claimable(actions: Actions, errand: models.Errand) -> dict:
    """The one-tap claim: a button (Telegram), a reaction (Matrix), a text hint elsewhere."""
    label = actions.render("errands/claim_button")
    command_text = f"/claim E{errand.number}"
    return {"buttons": [{"label": label, "command": command_text, "emoji": "✋"}],
            "ref": f"E{errand.number}"}


async def _tell_poster(ctx: Context, errand: models.Errand, template: str, **values) -> None:
    if errand.posted_by_id != ctx.person.id:
        poster = await load(ctx.db, models.Person, errand.posted_by_id)
        ctx.tell(poster, template, origin=ctx.chat, errand=errand, **values)


def _origin(chats: list[models.Chat], person: models.Person) -> models.Chat | None:
    """The grid chat told when a direct message cannot reach `person` (same transport)."""
    return next((chat for chat in chats if chat.transport == person.transport), None)


async def _describe(db, errand: models.Errand, now: datetime) -> Line:
    household = await db.get(models.Household, errand.household_id) if errand.household_id else None
    claimer = await db.get(models.Person, errand.claimed_by_id) if errand.claimed_by_id else None
    return _line(errand, household.code if household else None,
                 claimer.label if claimer else None, now)


async def _count(db, *conditions) -> int:
    return await db.scalar(select(func.count()).select_from(models.Errand).where(*conditions))


async def _lines(db, now: datetime, *conditions, newest_first: bool = False) -> list[Line]:
    """Errands matching `conditions` as shown in lists: oldest first, or the newest ones."""
    claimer = aliased(models.Person)
    order = models.Errand.number.desc() if newest_first else models.Errand.number
    rows = (
        await db.execute(
            select(models.Errand, models.Household.code, claimer)
            .outerjoin(models.Household, models.Household.id == models.Errand.household_id)
            .outerjoin(claimer, claimer.id == models.Errand.claimed_by_id)
            .where(*conditions)
            .order_by(order)
            .limit(LIST_LIMIT)
        )
    ).all()
    return [_line(e, code, person.label if person else None, now) for e, code, person in rows]


def _line(errand: models.Errand, household: str | None, claimer: str | None, now: datetime) -> Line:
    overdue = errand.state in ACTIVE and errand.due_at is not None and errand.due_at < now
    return Line(errand, household, claimer, now - errand.posted_at, overdue)

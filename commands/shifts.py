"""Duty shifts (seed points 4 and 7): a grid's leader sets up duty posts (checkpoint 卡口,
patrol 巡查, temperature check 测温) and shifts on them; members sign up, hand a slot to
someone else, or leave it to the first on the waiting list. Nobody is put on two shifts at
once, or on more than the community's maximum hours a day. People are reminded before the
start; leaders hear at the start of slots still empty; hours are credited once a shift has
ended, unless a leader marked a no-show.

/post add, /post list, /shift add, /signup, /unsign, /swap, /shifts, /noshow; the shift
clock (reminders, start alerts, credit); the digest section; the hand-back of a leaving
member's sign-ups.

Taking a slot is one conditional INSERT ("only while fewer than `slots` are held") made
while the shift's row is locked: on SQLite every write transaction is serialised already;
on PostgreSQL the lock makes the count in that INSERT see every earlier sign-up, so of
many people taking the last slot at once exactly one gets it and the others are put on the
waiting list, in the order they came.

The rest rules are about one person across shifts, so the shift's lock does not cover them:
on PostgreSQL the person is locked too (a transaction-scoped advisory lock keyed by the
person, `_hold_person`) before their other shifts are read, so one person signing up for two
overlapping shifts at once gets one and is refused the other. The order is always the shift
first, then the person (a member leaving locks all the shifts they free, then the people
waiting on them, by id), so two transactions never wait for each other in a circle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.api import (
    Actions,
    ArgError,
    Choice,
    Context,
    Converter,
    Date,
    Hours,
    JobContext,
    PersonRef,
    Reject,
    Role,
    ShiftRef,
    Text,
    Where,
    command,
    digest_section,
    hand_back,
    job,
)
from bot.args import Integer
from storage import models
from storage.queries import grid_chats, load, next_number
from storage.types import UTCDateTime

SERIES_MAX = 31  # days in one `repeat=daily` series
SLOTS_MAX = 200
LIST_LIMIT = 30
CLOCK_EVERY = timedelta(minutes=5)
# The longest `/set shiftremind`; the shift clock looks this far ahead for reminders.
REMIND_MAX = timedelta(hours=24)
# The first key of the advisory locks the rest rules take on PostgreSQL (the second is the
# person's id): a number of this module's own, so no other lock shares it.
REST_LOCK = 0x5E5751

Slots = Annotated[int, Integer(minimum=1, maximum=SLOTS_MAX)]
_daily = Choice("daily", aliases={"每天": "daily", "每日": "daily"})
_daily.placeholder = "daily"
Repeat = Annotated[str, _daily]
Which = Annotated[
    str,
    Choice("today", "tomorrow", "week", "mine", aliases={
        "今天": "today", "明天": "tomorrow", "本周": "week", "一周": "week", "我的": "mine",
    }),
]


class ExistingPost(Converter):
    """A duty post of this grid, by name."""

    placeholder = "post"

    async def convert(self, ctx: Context, word: str) -> models.DutyPost:
        grid = ctx.require_grid()
        post = await ctx.db.scalar(
            select(models.DutyPost).where(
                models.DutyPost.grid_id == grid.id, models.DutyPost.name == word
            )
        )
        if post is None:
            names = (
                await ctx.db.scalars(
                    select(models.DutyPost.name)
                    .where(models.DutyPost.grid_id == grid.id)
                    .order_by(models.DutyPost.id)
                )
            ).all()
            raise ArgError("unknown_post", word=word, names=list(names))
        return post


PostRef = Annotated[models.DutyPost, ExistingPost()]


@dataclass
class Line:
    """A shift as shown: its post, who holds its slots, how many wait."""

    shift: models.Shift
    post: models.DutyPost
    people: list[str] = field(default_factory=list)
    waiting: int = 0

    @property
    def filled(self) -> int:
        return len(self.people)

    @property
    def empty(self) -> int:
        return max(0, self.shift.slots - self.filled)


@dataclass(frozen=True)
class Absence:
    """Who was absent from a shift, as the `private` filter reads it: not a health detail,
    but shown to the same readers — the grid's leaders, the secretaries, the person
    themselves (`by_id`) — and never in a grid's group chat."""

    community_id: int
    grid_id: int
    by_id: int


# --- posts and shifts -------------------------------------------------------------------


@command("post add", role=Role.LEADER, where=Where.GRID)
async def post_add(ctx: Context, name: str, place: Text = "") -> None:
    """Add a duty post to this grid, e.g. 卡口 north gate (a name, then where it is)."""
    grid = ctx.require_grid()
    if await ctx.db.scalar(
        select(models.DutyPost.id).where(
            models.DutyPost.grid_id == grid.id, models.DutyPost.name == name
        )
    ):
        raise Reject("shifts/post_exists", name=name)
    post = models.DutyPost(community_id=grid.community_id, grid_id=grid.id, name=name, place=place)
    ctx.db.add(post)
    await ctx.db.flush()
    ctx.reply("shifts/post_added", post=post)


@command("post list", role=Role.MEMBER, where=Where.GRID, default=True, aliases=("岗位",))
async def post_list(ctx: Context) -> None:
    """This grid's duty posts."""
    grid = ctx.require_grid()
    posts = (
        await ctx.db.scalars(
            select(models.DutyPost).where(models.DutyPost.grid_id == grid.id)
            .order_by(models.DutyPost.id)
        )
    ).all()
    ctx.reply("shifts/post_list", posts=posts, grid=grid)


@command("shift add", role=Role.LEADER, where=Where.GRID, default=True, aliases=("排班",))
async def shift_add(
    ctx: Context,
    post: PostRef,
    day: Date,
    hours: Hours,
    *,
    slots: Slots = 1,
    repeat: Repeat | None = None,
    until: Date | None = None,
) -> None:
    """Add a shift on a post (22:00-06:00 runs past midnight).

    repeat=daily until=<date> adds one a day."""
    grid = ctx.require_grid()
    start, end = hours
    if start == end:
        raise Reject("shifts/empty_span", start=start)
    if (repeat is None) != (until is None):
        raise Reject("shifts/repeat_needs_until")
    last = until or day
    if last < day:
        raise Reject("shifts/series_backwards", first=day, last=last)
    days = (last - day).days + 1
    if days > SERIES_MAX:
        raise Reject("shifts/series_too_long", days=days, limit=SERIES_MAX)
    starts = _at(ctx, day, start)
    if starts <= ctx.now:
        raise Reject("shifts/past", starts=starts)
    added = []
    for offset in range(days):
        first = _at(ctx, day + timedelta(days=offset), start)
        ends = _at(ctx, day + timedelta(days=offset + (1 if end < start else 0)), end)
        shift = models.Shift(
            community_id=grid.community_id,
            number=await next_number(ctx.db, grid.community_id, "S"),
            grid_id=grid.id, post_id=post.id, starts_at=first, ends_at=ends, slots=slots,
            created_by_id=ctx.person.id,
        )
        ctx.db.add(shift)
        added.append(shift)
    await ctx.db.flush()
    ctx.ref(*(f"S{s.number}" for s in added))
    lines = [Line(s, post) for s in added]
    ctx.post(ctx.chat, "shifts/added", lines=lines, **_signup_buttons(ctx, added))


def _at(actions: Actions, day: date, clock: time) -> datetime:
    """A local date and time of the community, as an aware time."""
    return datetime.combine(day, clock, ZoneInfo(actions.tz))


def _signup_buttons(actions: Actions, shifts: list[models.Shift]) -> dict:
    """The one-tap sign-up: a button (Telegram), a reaction (Matrix), a text hint elsewhere.
    A series gets a button per shift, each with its own reaction key."""
    label = actions.render("shifts/signup_button")
    if len(shifts) == 1:
        number = shifts[0].number
        return {"buttons": [{"label": label, "command": f"/signup S{number}", "emoji": "✋"}],
                "ref": f"S{number}"}
    return {"buttons": [{"label": f"{label} S{s.number}", "command": f"/signup S{s.number}"}
                        for s in shifts], "ref": f"S{shifts[0].number}"}


# --- signing up, leaving, swapping ------------------------------------------------------


@command("signup", role=Role.MEMBER, where=Where.COMMUNITY, aliases=("报名", "值班报名"))
async def signup(ctx: Context, shift: ShiftRef) -> None:
    """Take a slot on a shift, or join its waiting list when it is full (or accept a swap)."""
    post = await _open_shift(ctx, shift)
    mine = await _signup_of(ctx.db, shift.id, ctx.person.id)
    offer = await ctx.db.scalar(
        select(models.SignUp).where(
            models.SignUp.shift_id == shift.id, models.SignUp.state == "slot",
            models.SignUp.offered_to_id == ctx.person.id,
        )
    )
    if offer is not None and (mine is None or mine.state != "slot"):
        await _accept_swap(ctx, shift, post, offer, mine)
        return
    if mine is not None:
        raise Reject("shifts/already", shift=shift, post=post, state=mine.state,
                     position=await _position(ctx.db, mine))
    await _check_rules(ctx, shift, post, ctx.person)
    row_id = await _take_slot(ctx, shift)
    line = await _line(ctx.db, shift, post)
    if row_id is not None:
        ctx.extra_changes.append({
            "table": "signups", "id": row_id, "op": "insert", "before": None,
            "after": {"shift_id": shift.id, "person_id": ctx.person.id, "state": "slot",
                      "at": ctx.now.isoformat()},
        })
        ctx.ref(f"S{shift.number}")
        ctx.reply("shifts/signed", line=line, person=ctx.person.label)
        return
    waiting = models.SignUp(shift_id=shift.id, person_id=ctx.person.id, state="waiting", at=ctx.now)
    ctx.db.add(waiting)
    await ctx.db.flush()
    ctx.ref(f"S{shift.number}")
    ctx.reply("shifts/waiting", line=line, person=ctx.person.label,
              position=await _position(ctx.db, waiting))


@command("unsign", role=Role.MEMBER, where=Where.COMMUNITY, aliases=("取消报名", "退出值班"))
async def unsign(ctx: Context, shift: ShiftRef) -> None:
    """Leave a shift (or its waiting list); the first on the waiting list moves up."""
    post = await _open_shift(ctx, shift)
    mine = await _signup_of(ctx.db, shift.id, ctx.person.id)
    if mine is None or mine.state not in ("slot", "waiting"):
        raise Reject("shifts/not_signed", shift=shift, post=post)
    was = mine.state
    await ctx.db.delete(mine)
    await ctx.db.flush()
    ctx.ref(f"S{shift.number}")
    moved = await _move_up(ctx, shift, post) if was == "slot" else []
    line = await _line(ctx.db, shift, post)
    ctx.reply("shifts/unsigned", line=line, person=ctx.person.label, was=was, moved=moved)


@command("swap", role=Role.MEMBER, where=Where.COMMUNITY, aliases=("换班",))
async def swap(ctx: Context, shift: ShiftRef, person: PersonRef) -> None:
    """Hand your slot on a shift to another member; it is theirs once they accept."""
    post = await _open_shift(ctx, shift)
    mine = await _signup_of(ctx.db, shift.id, ctx.person.id)
    if mine is None or mine.state != "slot":
        raise Reject("shifts/not_holding", shift=shift, post=post)
    if person.id == ctx.person.id:
        raise Reject("shifts/swap_self", shift=shift)
    grid = await load(ctx.db, models.Grid, shift.grid_id)
    if await ctx.app.people.role(ctx.db, person, ctx.community, grid) < Role.MEMBER:
        raise Reject("shifts/swap_not_member", person=person.label, grid=grid)
    theirs = await _signup_of(ctx.db, shift.id, person.id)
    if theirs is not None and theirs.state == "slot":
        raise Reject("shifts/swap_already", shift=shift, person=person.label)
    await _check_rules(ctx, shift, post, person)
    mine.offered_to_id = person.id
    ctx.ref(f"S{shift.number}")
    label = ctx.render("shifts/swap_button")
    line = await _line(ctx.db, shift, post)
    command_text = f"/signup S{shift.number}"
    ctx.reply("shifts/swap_offered", line=line, giver=ctx.person.label, taker=person.label,
              buttons=[{"label": label, "command": command_text, "emoji": "🔁"}],
              ref=f"S{shift.number}")
    ctx.tell(person, "shifts/swap_offer_dm", origin=ctx.chat, line=line, giver=ctx.person.label)


async def _accept_swap(
    ctx: Context, shift: models.Shift, post: models.DutyPost, offer: models.SignUp,
    mine: models.SignUp | None,
) -> None:
    """The person a slot was offered to takes it over; their place in line, if any, goes."""
    await _check_rules(ctx, shift, post, ctx.person)
    if mine is not None:
        await ctx.db.delete(mine)
        await ctx.db.flush()
    giver = await load(ctx.db, models.Person, offer.person_id)
    offer.person_id = ctx.person.id
    offer.offered_to_id = None
    offer.at = ctx.now
    await ctx.db.flush()
    ctx.ref(f"S{shift.number}")
    line = await _line(ctx.db, shift, post)
    ctx.reply("shifts/swapped", line=line, giver=giver.label, taker=ctx.person.label)
    ctx.tell(giver, "shifts/swap_done_dm", origin=ctx.chat, line=line, taker=ctx.person.label)


async def _open_shift(ctx: Context, shift: models.Shift) -> models.DutyPost:
    """For sign-ups: the shift is of the caller's grid and has not started. Locks its row
    until the command commits, so sign-ups on one shift happen one after another."""
    grid = ctx.require_grid()
    if shift.grid_id != grid.id:
        other = await ctx.db.get(models.Grid, shift.grid_id)
        raise Reject("shifts/other_grid", shift=shift, grid=other)
    await ctx.db.refresh(shift, with_for_update=True)
    post = await load(ctx.db, models.DutyPost, shift.post_id)
    if shift.starts_at <= ctx.now:
        raise Reject("shifts/started", shift=shift, post=post)
    return post


async def _take_slot(ctx: Context, shift: models.Shift) -> int | None:
    """One conditional INSERT: a slot for the caller only while fewer than `slots` are held.
    The id of the new sign-up, or None when the shift is full."""
    held = (
        select(func.count())
        .select_from(models.SignUp)
        .where(models.SignUp.shift_id == shift.id, models.SignUp.state == "slot")
        .scalar_subquery()
    )
    row = (
        select(
            models.Shift.id, literal(ctx.person.id), literal("slot"),
            literal(ctx.now, UTCDateTime()),
        )
        .where(models.Shift.id == shift.id, held < models.Shift.slots)
    )
    return await ctx.db.scalar(
        insert(models.SignUp)
        .from_select(["shift_id", "person_id", "state", "at"], row)
        .returning(models.SignUp.id)
    )


async def _move_up(actions: Actions, shift: models.Shift, post: models.DutyPost) -> list[str]:
    """Fills free slots from the waiting list, first come first served. Someone whom a rest
    rule would now stop is taken off the list and told why. The caller holds the shift's
    lock. Returns who moved up."""
    moved: list[str] = []
    chats = await grid_chats(actions.db, shift.grid_id)
    community = await _community(actions, shift)
    while await _held(actions.db, shift.id) < shift.slots:
        first = await actions.db.scalar(
            select(models.SignUp)
            .where(models.SignUp.shift_id == shift.id, models.SignUp.state == "waiting")
            .order_by(models.SignUp.id)
            .limit(1)
        )
        if first is None:
            break
        person = await load(actions.db, models.Person, first.person_id)
        problem = await _rest_problem(actions, community, shift, person)
        if problem is not None:
            await actions.db.delete(first)
            await actions.db.flush()
            template, values = problem
            actions.tell(person, "shifts/skipped", origin=_origin(chats, person), shift=shift,
                         post=post, rule=template, who=None, **values)
            continue
        first.state = "slot"
        first.at = actions.now
        await actions.db.flush()
        moved.append(person.label)
        line = await _line(actions.db, shift, post)
        actions.tell(person, "shifts/moved_up", origin=_origin(chats, person), line=line)
    return moved


# --- the rest rules ---------------------------------------------------------------------


async def _check_rules(
    ctx: Context, shift: models.Shift, post: models.DutyPost, person: models.Person
) -> None:
    problem = await _rest_problem(ctx, ctx.require_community(), shift, person)
    if problem is not None:
        template, values = problem
        who = None if person.id == ctx.person.id else person.label
        raise Reject(template, shift=shift, post=post, who=who, **values)


async def _rest_problem(
    actions: Actions, community: models.Community, shift: models.Shift, person: models.Person
) -> tuple[str, dict] | None:
    """Which rest rule `person` would break by holding a slot on `shift`, if any: no two
    shifts at once; no more than the community's `max_hours` in one local day. Returns the
    rule's template and the shifts it collides with. The caller holds the shift's lock; the
    person's is taken here and held until the transaction ends, so what is read below stays
    true until this transaction's sign-up is committed."""
    await _hold_person(actions.db, person.id)
    tz = ZoneInfo(community.tz)
    first_day = shift.starts_at.astimezone(tz).date()
    last_day = (shift.ends_at - timedelta(microseconds=1)).astimezone(tz).date()
    window_start = datetime.combine(first_day, time(), tz)
    window_end = datetime.combine(last_day + timedelta(days=1), time(), tz)
    held = (
        await actions.db.execute(
            select(models.Shift, models.DutyPost)
            .join(models.SignUp, models.SignUp.shift_id == models.Shift.id)
            .join(models.DutyPost, models.DutyPost.id == models.Shift.post_id)
            .where(
                models.SignUp.person_id == person.id,
                models.SignUp.state == "slot",
                models.Shift.community_id == community.id,
                models.Shift.id != shift.id,
                models.Shift.ends_at > window_start,
                models.Shift.starts_at < window_end,
            )
            .order_by(models.Shift.starts_at)
        )
    ).all()
    for other, other_post in held:
        if other.starts_at < shift.ends_at and other.ends_at > shift.starts_at:
            return "shifts/rule_overlap", {"other": other, "other_post": other_post}
    day = first_day
    while day <= last_day:
        start = datetime.combine(day, time(), tz)
        end = datetime.combine(day + timedelta(days=1), time(), tz)
        same_day = [(o, p) for o, p in held if _overlap(o, start, end) > 0]
        total = _overlap(shift, start, end) + sum(_overlap(o, start, end) for o, _ in same_day)
        if total > community.max_hours:
            return "shifts/rule_maxhours", {
                "day": day, "total": round(total, 1), "limit": community.max_hours,
                "others": same_day, "own": round(_overlap(shift, start, end), 1),
            }
        day += timedelta(days=1)
    return None


async def _hold_person(db: AsyncSession, person_id: int) -> None:
    """Locks a person's sign-ups until the transaction ends (PostgreSQL; SQLite runs one
    writer at a time already). Taken again by the same transaction, it just holds."""
    if db.get_bind().dialect.name == "postgresql":
        await db.execute(select(func.pg_advisory_xact_lock(REST_LOCK, person_id)))


def _overlap(shift: models.Shift, start: datetime, end: datetime) -> float:
    """Hours of `shift` between `start` and `end`."""
    seconds = (min(shift.ends_at, end) - max(shift.starts_at, start)).total_seconds()
    return max(0.0, seconds / 3600)


# --- lists and no-shows -----------------------------------------------------------------


@command("shifts", role=Role.MEMBER, where=Where.COMMUNITY, aliases=("值班表", "值班"))
async def shifts(ctx: Context, which: Which | None = None) -> None:
    """Shifts with filled/total slots, empty ones marked.

    Which: upcoming (default), today, tomorrow, week, mine."""
    community = ctx.require_community()
    conditions = [models.Shift.community_id == community.id]
    if ctx.grid is not None and which != "mine":
        conditions.append(models.Shift.grid_id == ctx.grid.id)
    if which in ("today", "tomorrow", "week"):
        first = ctx.today + timedelta(days=1 if which == "tomorrow" else 0)
        days = 7 if which == "week" else 1
        conditions += [models.Shift.starts_at >= _at(ctx, first, time()),
                       models.Shift.starts_at < _at(ctx, first + timedelta(days=days), time())]
        if which == "week":
            conditions.append(models.Shift.ends_at > ctx.now)
    else:
        conditions.append(models.Shift.ends_at > ctx.now)
    if which == "mine":
        conditions.append(models.Shift.id.in_(
            select(models.SignUp.shift_id).where(
                models.SignUp.person_id == ctx.person.id,
                models.SignUp.state.in_(("slot", "waiting")),
            )
        ))
    lines = await _lines(ctx.db, *conditions)
    mine = {}
    if which == "mine" and lines:
        rows = await ctx.db.execute(
            select(models.SignUp.shift_id, models.SignUp.state).where(
                models.SignUp.person_id == ctx.person.id,
                models.SignUp.shift_id.in_([line.shift.id for line in lines]),
            )
        )
        mine = dict(rows.all())
    ctx.reply("shifts/list", which=which, lines=lines, mine=mine, grid=ctx.grid,
              limit=LIST_LIMIT)


@command("noshow", role=Role.LEADER, where=Where.COMMUNITY, aliases=("缺勤", "未到岗"))
async def noshow(ctx: Context, shift: ShiftRef, person: PersonRef) -> None:
    """Mark that someone did not come to a shift: no hours are credited to them."""
    # A leader marks their own grid's shifts; a secretary any, from any chat.
    if ctx.role < Role.SECRETARY and shift.grid_id != ctx.require_grid().id:
        other = await ctx.db.get(models.Grid, shift.grid_id)
        raise Reject("shifts/other_grid", shift=shift, grid=other)
    await ctx.db.refresh(shift, with_for_update=True)
    post = await load(ctx.db, models.DutyPost, shift.post_id)
    if shift.starts_at > ctx.now:
        raise Reject("shifts/noshow_early", shift=shift, post=post)
    row = await _signup_of(ctx.db, shift.id, person.id)
    if row is None or row.state == "waiting":
        raise Reject("shifts/noshow_not_on", shift=shift, person=person.label)
    if row.state == "noshow":
        raise Reject("shifts/noshow_already", shift=shift, person=person.label)
    row.state = "noshow"
    row.noshow_at = ctx.now
    ctx.ref(f"S{shift.number}")
    # Said plainly to the leader; a group chat only hears that it was recorded, no name.
    ctx.reply("shifts/noshow", shift=shift, post=post, person=person.label,
              named=ctx.chat.is_direct)
    ctx.tell(person, "shifts/noshow_dm", origin=ctx.chat, shift=shift, post=post,
             by=ctx.person.label)


# --- the shift clock --------------------------------------------------------------------


async def next_shift_due(jc: JobContext) -> datetime | None:
    """When the shift clock next has work: a reminder's lead time reached before a shift
    starts, a shift starting, a shift ending (the manual clock's `due`, bot/scheduler.py)."""
    Shift = models.Shift
    reminders = (
        await jc.db.execute(
            select(Shift.starts_at, models.Community.shift_remind_minutes)
            .join(models.Community, models.Community.id == Shift.community_id)
            .where(Shift.reminded_at.is_(None), Shift.starts_at > jc.now)
        )
    ).all()
    moments = [starts - min(timedelta(minutes=lead), REMIND_MAX) for starts, lead in reminders]
    for column, mark in ((Shift.starts_at, Shift.started_alerted_at),
                         (Shift.ends_at, Shift.credited_at)):
        moment = await jc.db.scalar(select(func.min(column)).where(mark.is_(None)))
        if moment is not None:
            moments.append(moment)
    return min(moments, default=None)


@job(every=CLOCK_EVERY, due=next_shift_due)
async def shift_clock(jc: JobContext) -> None:
    """Reminds people before a shift (once: `reminded_at`), tells leaders at the start of
    slots still empty (once: `started_alerted_at`), and credits hours once a shift has
    ended (`credited_at`, which /me, /board and the welfare check-in read). The marks make
    reruns, restarts and a second instance harmless."""
    now = jc.now
    upcoming = (
        await jc.db.execute(
            select(models.Shift, models.Community)
            .join(models.Community, models.Community.id == models.Shift.community_id)
            .where(
                models.Shift.reminded_at.is_(None),
                models.Shift.starts_at > now,
                models.Shift.starts_at <= now + REMIND_MAX,
            )
            .order_by(models.Shift.starts_at)
        )
    ).all()
    for shift, community in upcoming:
        lead = timedelta(minutes=community.shift_remind_minutes)
        if shift.starts_at - lead <= now:
            await _remind(dataclasses.replace(jc, community=community), shift, lead)
    started = (
        await jc.db.execute(
            select(models.Shift, models.Community)
            .join(models.Community, models.Community.id == models.Shift.community_id)
            .where(models.Shift.started_alerted_at.is_(None), models.Shift.starts_at <= now)
            .order_by(models.Shift.starts_at)
        )
    ).all()
    for shift, community in started:
        shift.started_alerted_at = now
        if shift.ends_at > now:
            await _alert_empty(dataclasses.replace(jc, community=community), shift)
    ended = (
        await jc.db.scalars(
            select(models.Shift).where(
                models.Shift.credited_at.is_(None), models.Shift.ends_at <= now
            )
        )
    ).all()
    for shift in ended:
        shift.credited_at = now


async def _remind(jc: JobContext, shift: models.Shift, lead: timedelta) -> None:
    shift.reminded_at = jc.now
    post = await load(jc.db, models.DutyPost, shift.post_id)
    chats = await grid_chats(jc.db, shift.grid_id)
    for person in await _holders(jc.db, shift.id):
        jc.tell(person, "shifts/reminder", origin=_origin(chats, person), shift=shift, post=post,
                left=shift.starts_at - jc.now)


async def _alert_empty(jc: JobContext, shift: models.Shift) -> None:
    """At the start, the grid's leaders (or, with none, the secretaries) hear of empty slots."""
    post = await load(jc.db, models.DutyPost, shift.post_id)
    line = await _line(jc.db, shift, post)
    if line.empty == 0:
        return
    leaders = await _people_with_role(jc.db, shift.community_id, "leader", shift.grid_id)
    chats = await grid_chats(jc.db, shift.grid_id)
    for leader in leaders or await _people_with_role(jc.db, shift.community_id, "secretary"):
        jc.tell(leader, "shifts/start_empty", origin=_origin(chats, leader), line=line)


# --- the digest -------------------------------------------------------------------------


@digest_section("shifts", order=40, template="shifts/digest")
async def digest(actions: Actions, grid: models.Grid, since: datetime, until: datetime) -> dict:
    """One grid's shifts of the next 24 h that still have empty slots, and the no-shows
    marked since the last digest (names only where the `private` rule allows)."""
    coming = await _lines(
        actions.db, models.Shift.grid_id == grid.id, models.Shift.starts_at >= until,
        models.Shift.starts_at < until + timedelta(days=1),
    )
    short = [line for line in coming if line.empty]
    rows = (
        await actions.db.execute(
            select(models.Shift, models.DutyPost, models.Person)
            .join(models.SignUp, models.SignUp.shift_id == models.Shift.id)
            .join(models.DutyPost, models.DutyPost.id == models.Shift.post_id)
            .join(models.Person, models.Person.id == models.SignUp.person_id)
            .where(
                models.Shift.grid_id == grid.id, models.SignUp.state == "noshow",
                models.SignUp.noshow_at > since, models.SignUp.noshow_at <= until,
            )
            .order_by(models.Shift.starts_at, models.Person.id)
        )
    ).all()
    noshows = [
        {"shift": s, "post": p, "person": person.label,
         "absence": Absence(s.community_id, s.grid_id, person.id)}
        for s, p, person in rows
    ]
    empty = sum(line.empty for line in short)
    return {"short": short, "empty": empty, "noshows": noshows,
            "urgency": empty + len(noshows)}


# --- a member leaving ------------------------------------------------------------------


@hand_back
async def give_back_shifts(actions: Actions, person: models.Person, grid: models.Grid) -> None:
    """Someone leaving the grid (or losing their role) leaves its shifts still to come:
    their slots go to the waiting lists, their places in line and swap offers to them go."""
    rows = (
        await actions.db.execute(
            select(models.SignUp, models.Shift)
            .join(models.Shift, models.Shift.id == models.SignUp.shift_id)
            .where(
                models.Shift.grid_id == grid.id, models.Shift.starts_at > actions.now,
                models.SignUp.person_id == person.id,
                models.SignUp.state.in_(("slot", "waiting")),
            )
            .order_by(models.Shift.starts_at)
        )
    ).all()
    offers = (
        await actions.db.scalars(
            select(models.SignUp)
            .join(models.Shift, models.Shift.id == models.SignUp.shift_id)
            .where(models.Shift.grid_id == grid.id, models.SignUp.offered_to_id == person.id)
        )
    ).all()
    for offer in offers:
        offer.offered_to_id = None
    freed = []
    for row, shift in rows:
        if row.state == "slot":
            freed.append(shift)
        await actions.db.delete(row)
    await actions.db.flush()
    # Every shift first, then everyone who may move up, by id: the order sign-ups lock in.
    for shift in freed:
        await actions.db.refresh(shift, with_for_update=True)
    if freed:
        waiting = await actions.db.scalars(
            select(models.SignUp.person_id)
            .where(models.SignUp.shift_id.in_([s.id for s in freed]),
                   models.SignUp.state == "waiting")
            .distinct()
            .order_by(models.SignUp.person_id)
        )
        for person_id in waiting.all():
            await _hold_person(actions.db, person_id)
    for shift in freed:
        post = await load(actions.db, models.DutyPost, shift.post_id)
        await _move_up(actions, shift, post)


# --- helpers ----------------------------------------------------------------------------


async def _signup_of(db, shift_id: int, person_id: int) -> models.SignUp | None:
    return await db.scalar(
        select(models.SignUp).where(
            models.SignUp.shift_id == shift_id, models.SignUp.person_id == person_id
        )
    )


async def _held(db, shift_id: int) -> int:
    return await db.scalar(
        select(func.count()).select_from(models.SignUp).where(
            models.SignUp.shift_id == shift_id, models.SignUp.state == "slot"
        )
    )


async def _position(db, row: models.SignUp) -> int:
    """Where a waiting sign-up stands in line (1 = next to move up)."""
    if row.state != "waiting":
        return 0
    return await db.scalar(
        select(func.count()).select_from(models.SignUp).where(
            models.SignUp.shift_id == row.shift_id, models.SignUp.state == "waiting",
            models.SignUp.id <= row.id,
        )
    )


async def _holders(db, shift_id: int) -> list[models.Person]:
    return list(
        (
            await db.scalars(
                select(models.Person)
                .join(models.SignUp, models.SignUp.person_id == models.Person.id)
                .where(models.SignUp.shift_id == shift_id, models.SignUp.state == "slot")
                .order_by(models.SignUp.id)
            )
        ).all()
    )


async def _people_with_role(
    db, community_id: int, role: str, grid_id: int | None = None
) -> list[models.Person]:
    query = (
        select(models.Person)
        .join(models.Membership, models.Membership.person_id == models.Person.id)
        .where(models.Membership.community_id == community_id, models.Membership.role == role)
    )
    if grid_id is not None:
        query = query.where(models.Membership.grid_id == grid_id)
    return list((await db.scalars(query.distinct().order_by(models.Person.id))).all())


async def _community(actions: Actions, shift: models.Shift) -> models.Community:
    if actions.community is not None and actions.community.id == shift.community_id:
        return actions.community
    return await load(actions.db, models.Community, shift.community_id)


def _origin(chats: list[models.Chat], person: models.Person) -> models.Chat | None:
    """The grid chat told when a direct message cannot reach `person` (same transport)."""
    return next((chat for chat in chats if chat.transport == person.transport), None)


async def _line(db, shift: models.Shift, post: models.DutyPost) -> Line:
    lines = await _describe(db, [(shift, post)])
    return lines[0]


async def _lines(db, *conditions) -> list[Line]:
    rows = (
        await db.execute(
            select(models.Shift, models.DutyPost)
            .join(models.DutyPost, models.DutyPost.id == models.Shift.post_id)
            .where(*conditions)
            .order_by(models.Shift.starts_at, models.Shift.number)
            .limit(LIST_LIMIT)
        )
    ).all()
    return await _describe(db, rows)


async def _describe(db, rows) -> list[Line]:
    """Shifts with who holds their slots and how many wait, in two queries."""
    lines = {shift.id: Line(shift, post) for shift, post in rows}
    if lines:
        signed = await db.execute(
            select(models.SignUp.shift_id, models.SignUp.state, models.Person)
            .join(models.Person, models.Person.id == models.SignUp.person_id)
            .where(models.SignUp.shift_id.in_(list(lines)),
                   models.SignUp.state.in_(("slot", "waiting")))
            .order_by(models.SignUp.id)
        )
        for shift_id, state, person in signed.all():
            if state == "slot":
                lines[shift_id].people.append(person.label)
            else:
                lines[shift_id].waiting += 1
    return list(lines.values())

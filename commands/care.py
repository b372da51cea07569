"""Care for the front line (seed point 7): judge people by their front-line work, and look
after the people doing it.

/board: contributions per member of a grid for this week or month — screenings, key-person
check-ins, errands done, shift hours and praises — counted from the records with one grouped
query per kind, never from counters kept on the side.

/welfare: a front-line worker's 1–5 score after duty (1 = worn out, 5 = fine), in a direct
chat only. After a shift has ended and its hours are credited, each person who held a slot
is asked once by direct message, with one button per score (`WelfareAsk` records the
question, so neither a rerun nor a restart asks twice). Scores go onwards only as aggregates
per grid — how many answered, the average, how many at 1–2 — in the whole-community digest,
and only for grids with at least MIN_ANSWERS answers, so no single answer can be read off
them. Never who said what, never a note. A worker may choose to let their leader know
(`/welfare share`, offered after a low score); only then does the leader see that score.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select

from bot.api import (
    Actions,
    ArgError,
    Choice,
    Context,
    Converter,
    JobContext,
    Reject,
    Role,
    Text,
    Where,
    command,
    digest_section,
    job,
)
from storage import models
from storage.queries import shift_hours

GRID_ROLES = ("member", "leader")
LOW = 2  # a score at or below this is low: worn out
MIN_ANSWERS = 3  # fewer answers than this in a grid: no score figures for it at all
ASK_EVERY = timedelta(minutes=10)
ASK_WITHIN = timedelta(hours=24)  # shifts that ended longer ago than this are not asked about
SCORE_EMOJI = {1: "1️⃣", 2: "2️⃣", 3: "3️⃣", 4: "4️⃣", 5: "5️⃣"}

Period = Annotated[
    str,
    Choice("week", "month", aliases={"本周": "week", "周": "week", "本月": "month", "月": "month"}),
]


class Score(Converter):
    """A welfare score, 1 to 5: `3`, `３`, or a Chinese numeral `三` (people type those)."""

    by_name = True
    NUMERALS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}

    async def convert(self, ctx: Context, word: str) -> int:
        value = self.NUMERALS.get(word.removesuffix("分"))
        if value is None:
            try:
                value = int(word.removesuffix("分"))  # int() reads full-width digits too
            except ValueError:
                raise ArgError("welfare_score", word=word) from None
        if not 1 <= value <= 5:
            raise ArgError("welfare_score", word=word)
        return value

    def usage(self, name: str) -> str:
        return "<1-5>"


# --- /board -----------------------------------------------------------------------------


@dataclass
class Contribution:
    person: str
    screenings: int = 0
    checkins: int = 0
    errands: int = 0
    hours: float = 0.0
    praises: int = 0

    @property
    def work(self) -> float:
        """What the board is sorted by: visits, check-ins, errands and hours on duty."""
        return self.screenings + self.checkins + self.errands + self.hours

    @property
    def anything(self) -> bool:
        return bool(self.work or self.praises)


@command("board", role=Role.MEMBER, where=Where.COMMUNITY, aliases=("贡献榜", "光荣榜"))
async def board(ctx: Context, period: Period = "week") -> None:
    """Contributions per member this week or month: screenings, errands, shift hours, praises."""
    community = ctx.require_community()
    if ctx.grid is not None:
        grids = [ctx.grid]
    elif ctx.role >= Role.SECRETARY:
        grids = list((await ctx.db.scalars(
            select(models.Grid).where(models.Grid.community_id == community.id)
            .order_by(models.Grid.code)
        )).all())
    else:
        raise Reject("core/no_grid")
    start, end = period_bounds(ctx.today, period, ctx.tz)
    boards = await contributions(ctx.db, community, grids, start, end)
    ctx.reply("care/board", period=period, start=start, last=end - timedelta(days=1),
              boards=[(grid, boards[grid.id]) for grid in grids])


def period_bounds(today: date, period: str, tz: str) -> tuple[datetime, datetime]:
    """This calendar week (from Monday) or month, as aware times [start, end) in `tz`."""
    if period == "month":
        first = today.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
    else:
        first = today - timedelta(days=today.weekday())
        following = first + timedelta(days=7)
    zone = ZoneInfo(tz)
    return datetime.combine(first, time(), zone), datetime.combine(following, time(), zone)


async def contributions(
    db, community: models.Community, grids: list[models.Grid], since: datetime, until: datetime
) -> dict[int, list[Contribution]]:
    """Per grid, its members' contributions in [since, until), most first. Work counts in the
    grid where it was done; one grouped query per kind of record, whatever the number of
    members or grids."""
    ids = [grid.id for grid in grids]
    rows: dict[int, dict[int, Contribution]] = {grid_id: {} for grid_id in ids}
    members = await db.execute(
        select(models.Membership.grid_id, models.Person)
        .join(models.Person, models.Person.id == models.Membership.person_id)
        .where(models.Membership.grid_id.in_(ids), models.Membership.role.in_(GRID_ROLES))
        .order_by(models.Membership.id)
    )
    for grid_id, person in members.all():
        rows[grid_id].setdefault(person.id, Contribution(person.label))

    def period(column):
        return (column >= since, column < until)

    counted = {
        "screenings": select(models.Screening.grid_id, models.Screening.by_id, func.count())
        .where(models.Screening.grid_id.in_(ids), *period(models.Screening.at))
        .group_by(models.Screening.grid_id, models.Screening.by_id),
        "checkins": select(models.KeyPerson.grid_id, models.CheckIn.by_id, func.count())
        .join(models.KeyPerson, models.KeyPerson.id == models.CheckIn.key_person_id)
        .where(models.KeyPerson.grid_id.in_(ids), *period(models.CheckIn.at))
        .group_by(models.KeyPerson.grid_id, models.CheckIn.by_id),
        "errands": select(models.Errand.grid_id, models.Errand.claimed_by_id, func.count())
        .where(models.Errand.grid_id.in_(ids), models.Errand.state == "done",
               *period(models.Errand.done_at))
        .group_by(models.Errand.grid_id, models.Errand.claimed_by_id),
        "praises": select(models.Praise.grid_id, models.Praise.person_id, func.count())
        .where(models.Praise.grid_id.in_(ids), *period(models.Praise.at))
        .group_by(models.Praise.grid_id, models.Praise.person_id),
    }
    for kind, query in counted.items():
        for grid_id, person_id, n in (await db.execute(query)).all():
            if person_id in rows[grid_id]:  # members only: not someone who has left
                setattr(rows[grid_id][person_id], kind, n)
    for grid_id in ids:
        hours = await shift_hours(db, community_id=community.id, grid_id=grid_id,
                                  since=since, until=until)
        for person_id, h in hours.items():
            if person_id in rows[grid_id]:
                rows[grid_id][person_id].hours = round(h, 1)
    return {
        grid_id: sorted(people.values(), key=lambda c: (-c.work, -c.praises, c.person))
        for grid_id, people in rows.items()
    }


# --- /welfare ---------------------------------------------------------------------------


@command("welfare", role=Role.MEMBER, where=Where.DIRECT, aliases=("关怀",))
async def welfare(ctx: Context, score: Annotated[int, Score()], note: Text = "") -> None:
    """How you are after duty, 1 (worn out) to 5 (fine); only totals reach the secretary."""
    community = ctx.require_community()
    ctx.db.add(models.WelfareCheck(
        community_id=community.id, grid_id=ctx.grid.id if ctx.grid else None,
        person_id=ctx.person.id, score=score, note=note, at=ctx.now,
    ))
    low = score <= LOW
    buttons = None
    if low and ctx.grid is not None:
        label = ctx.render("care/share_button")
        buttons = [{"label": label, "command": "/welfare share", "emoji": "🤝"}]
    ctx.reply("care/welfare_thanks", score=score, low=low, can_share=buttons is not None,
              buttons=buttons)


@command("welfare share", role=Role.MEMBER, where=Where.DIRECT)
async def welfare_share(ctx: Context) -> None:
    """Let your grid leader see your latest welfare score (the note stays private)."""
    community = ctx.require_community()
    check = await ctx.db.scalar(
        select(models.WelfareCheck)
        .where(models.WelfareCheck.community_id == community.id,
               models.WelfareCheck.person_id == ctx.person.id)
        .order_by(models.WelfareCheck.id.desc())
        .limit(1)
    )
    if check is None:
        raise Reject("care/nothing_to_share")
    if check.shared_at is not None:
        raise Reject("care/already_shared", score=check.score)
    leaders = [] if check.grid_id is None else list((await ctx.db.scalars(
        select(models.Person)
        .join(models.Membership, models.Membership.person_id == models.Person.id)
        .where(models.Membership.grid_id == check.grid_id, models.Membership.role == "leader",
               models.Person.id != ctx.person.id, models.Person.external_id.is_not(None))
        .order_by(models.Membership.id)
    )).all())
    if not leaders:
        raise Reject("care/no_leader")
    check.shared_at = ctx.now
    for leader in leaders:
        ctx.tell(leader, "care/shared_with_leader", person=ctx.person.label, score=check.score,
                 at=check.at)
    ctx.reply("care/shared", score=check.score, leaders=[leader.label for leader in leaders])


# --- asking after duty ------------------------------------------------------------------


def _unasked(now: datetime):
    """Who held a slot on a shift that ended (hours credited) within ASK_WITHIN and was not
    asked about it yet: (shift, person, community, post name, answered since it ended)."""
    asked = (
        select(models.WelfareAsk.id)
        .where(models.WelfareAsk.shift_id == models.Shift.id,
               models.WelfareAsk.person_id == models.SignUp.person_id)
        .exists()
    )
    # Someone who has told us already since the shift ended is not asked again.
    answered = (
        select(models.WelfareCheck.id)
        .where(models.WelfareCheck.person_id == models.SignUp.person_id,
               models.WelfareCheck.at >= models.Shift.ends_at)
        .exists()
    )
    return (
        select(models.Shift, models.Person, models.Community, models.DutyPost.name, answered)
        .join(models.SignUp, models.SignUp.shift_id == models.Shift.id)
        .join(models.Person, models.Person.id == models.SignUp.person_id)
        .join(models.Community, models.Community.id == models.Shift.community_id)
        .join(models.DutyPost, models.DutyPost.id == models.Shift.post_id)
        .where(
            models.Shift.credited_at.is_not(None),
            models.Shift.ends_at >= now - ASK_WITHIN,
            models.SignUp.state == "slot",
            ~asked,
        )
        .order_by(models.Shift.id, models.SignUp.id)
    )


async def next_ask_due(jc: JobContext) -> datetime | None:
    """Now if someone is still to be asked, else None: only the shift clock crediting a
    shift makes more (the manual clock's `due`, bot/scheduler.py)."""
    return jc.now if (await jc.db.execute(_unasked(jc.now).limit(1))).first() else None


@job(every=ASK_EVERY, due=next_ask_due)
async def ask_after_duty(jc: JobContext) -> None:
    """Asks each person who held a slot on a shift that has ended (hours credited) how they
    are, once: the `WelfareAsk` row is written with the question, in one transaction. One
    question per person per run, and none to someone who answered since the shift ended."""
    rows = (await jc.db.execute(_unasked(jc.now))).all()
    told: set[int] = set()
    for shift, person, community, post, already in rows:
        jc.db.add(models.WelfareAsk(shift_id=shift.id, person_id=person.id, at=jc.now))
        if already or person.external_id is None or person.id in told:
            continue  # answered already; no chat to ask in; or asked about another shift now
        told.add(person.id)
        actions = dataclasses.replace(jc, community=community)
        actions.tell(
            person, "care/ask", shift=shift, post=post,
            buttons=[{"label": str(n), "command": f"/welfare {n}", "emoji": SCORE_EMOJI[n]}
                     for n in range(1, 6)],
        )


# --- the digest -------------------------------------------------------------------------


@dataclass
class GridWelfare:
    grid: models.Grid
    answered: int
    average: float | None  # None when too few answered to show it
    low: int | None

    @property
    def shown(self) -> bool:
        return self.average is not None

    @property
    def strained(self) -> bool:
        """More than a third of the answers at 1–2."""
        return self.low is not None and 3 * self.low > self.answered


@digest_section("welfare", order=80, template="care/digest", scope="community")
async def digest(
    actions: Actions, grids: list[models.Grid], since: datetime, until: datetime
) -> dict:
    """Per grid: how many answered after duty, the average score, how many at 1–2 — each
    person's latest answer of the period once. Strained grids first; grids with fewer than
    MIN_ANSWERS answers show only the count. Never a name, a single score or a note."""
    if not grids:
        return {"welfare": [], "silent": [], "min_answers": MIN_ANSWERS, "urgency": 0}
    latest = (
        select(func.max(models.WelfareCheck.id))
        .where(
            models.WelfareCheck.community_id == grids[0].community_id,
            models.WelfareCheck.grid_id.is_not(None),
            models.WelfareCheck.at > since,
            models.WelfareCheck.at <= until,
        )
        .group_by(models.WelfareCheck.grid_id, models.WelfareCheck.person_id)
    )
    totals = {
        grid_id: (answered, average, low)
        for grid_id, answered, average, low in (
            await actions.db.execute(
                select(
                    models.WelfareCheck.grid_id,
                    func.count(),
                    func.avg(models.WelfareCheck.score),
                    func.sum(case((models.WelfareCheck.score <= LOW, 1), else_=0)),
                )
                .where(models.WelfareCheck.id.in_(latest))
                .group_by(models.WelfareCheck.grid_id)
            )
        ).all()
    }
    figures, silent = [], []
    for grid in grids:
        if grid.id not in totals:
            silent.append(grid)
            continue
        answered, average, low = totals[grid.id]
        enough = answered >= MIN_ANSWERS
        figures.append(GridWelfare(
            grid, answered, round(float(average), 1) if enough else None,
            int(low) if enough else None,
        ))
    figures.sort(key=lambda w: (not w.strained, not w.shown, w.grid.code))
    return {"welfare": figures, "silent": silent, "min_answers": MIN_ANSWERS,
            "urgency": sum(w.strained for w in figures)}

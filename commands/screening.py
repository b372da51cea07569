"""Door-to-door screening in rounds, visitor and vehicle logs, and coverage.

Coverage is computed from the screenings of the grid's current round (Grid.round_no),
never kept as a counter. A household may be screened again; its latest screening counts.
Group replies never show a temperature: a fever goes to the leaders and secretaries by
direct message.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from sqlalchemy import Select, bindparam, func, or_, select

from bot.api import (
    Actions,
    ArgError,
    Celsius,
    Choice,
    Context,
    Converter,
    ExistingHousehold,
    HouseholdRef,
    Int,
    Plate,
    Private,
    Reject,
    Role,
    Text,
    Where,
    command,
    digest_section,
)
from commands.keypersons import FEVER_AT, alert_health_team, follow_ups
from storage import models
from storage.households import normalise_household

STATUSES = ("ok", "fever", "away", "outsider", "refused")
Status = Annotated[
    str,
    Choice(*STATUSES, aliases={
        "正常": "ok", "发热": "fever", "外出": "away", "不在家": "away",
        "外来": "outsider", "外来人员": "outsider", "拒绝": "refused", "拒访": "refused",
    }),
]


class Place(Converter):
    """Where a visitor comes from, one word (`from=武汉`)."""

    placeholder = "place"


class HouseholdIfCode(ExistingHousehold):
    """An optional household before free text: a word that is no household code belongs to
    the note, but a code that is not in the register is an error, not part of the note."""

    def recognises(self, word: str) -> bool:
        return normalise_household(word) is not None

    async def convert(self, ctx: Context, word: str) -> models.Household:
        if not self.recognises(word):
            raise ArgError("household_code", word=word)
        return await super().convert(ctx, word)


def is_fever(status: str, temperature: float | None) -> bool:
    return status == "fever" or (temperature is not None and temperature >= FEVER_AT)


@dataclass
class BuildingCoverage:
    building: str
    screened: int
    total: int

    @property
    def percent(self) -> int:
        return round(100 * self.screened / self.total) if self.total else 0


@dataclass
class Coverage:
    """One grid's current round: households screened per building (lagging first), and the
    latest status of each screened household, counted."""

    round_no: int
    buildings: list[BuildingCoverage]
    statuses: dict[str, int]

    @property
    def screened(self) -> int:
        return sum(b.screened for b in self.buildings)

    @property
    def total(self) -> int:
        return sum(b.total for b in self.buildings)

    @property
    def percent(self) -> int:
        return round(100 * self.screened / self.total) if self.total else 0

    @property
    def lagging(self) -> list[BuildingCoverage]:
        return [b for b in self.buildings if b.screened < b.total]


def _coverage_statement() -> Select:
    """A grid's households counted by building and by the status and temperature of their
    latest screening in the round (NULL: not screened yet), in one statement."""
    latest = (
        select(models.Screening.household_id, func.max(models.Screening.id).label("id"))
        .where(
            models.Screening.grid_id == bindparam("grid_id"),
            models.Screening.round_no == bindparam("round_no"),
        )
        .group_by(models.Screening.household_id)
        .subquery()
    )
    latest_of_each = (
        models.Household.building, models.Screening.status, models.Screening.temperature
    )
    return (
        select(*latest_of_each, func.count())
        .outerjoin(latest, latest.c.household_id == models.Household.id)
        .outerjoin(models.Screening, models.Screening.id == latest.c.id)
        .where(models.Household.grid_id == bindparam("grid_id"))
        .group_by(*latest_of_each)
    )


# Built once, with the values bound at each use: every screening's reply shows the coverage.
COVERAGE = _coverage_statement()
SCREENED_BEFORE = select(func.count()).select_from(models.Screening).where(
    models.Screening.household_id == bindparam("household_id"),
    models.Screening.round_no == bindparam("round_no"),
)


async def grid_coverage(db, grid: models.Grid) -> Coverage:
    rows = (await db.execute(COVERAGE, {"grid_id": grid.id, "round_no": grid.round_no})).all()
    totals: Counter[str] = Counter()
    screened: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for building, status, temperature, households in rows:
        totals[building] += households
        if status is not None:
            screened[building] += households
            statuses["fever" if is_fever(status, temperature) else status] += households
    buildings = sorted(
        (BuildingCoverage(b, screened[b], n) for b, n in totals.items()),
        key=lambda c: (c.screened / c.total, len(c.building), c.building),
    )
    return Coverage(
        round_no=grid.round_no, buildings=buildings,
        statuses={s: statuses[s] for s in STATUSES if statuses[s]},
    )


async def _check_grid(ctx: Context, household: models.Household) -> models.Grid:
    """This chat's grid, which must hold the household."""
    grid = ctx.require_grid()
    if household.grid_id != grid.id:
        other = await ctx.db.get(models.Grid, household.grid_id)
        raise Reject("screening/household_elsewhere", household=household.code, grid=other)
    return grid


def _start_of_today(ctx: Context) -> datetime:
    return datetime.combine(ctx.today, time(), ZoneInfo(ctx.tz))


# --- commands ---------------------------------------------------------------------------


@command("screen", role=Role.MEMBER, where=Where.GRID, aliases=("排查",))
async def screen(
    ctx: Context,
    household: HouseholdRef,
    status: Annotated[Status, Private(lambda status: status == "fever")],
    note: Text = "",
    *,
    people: Int | None = None,
    temp: Annotated[Celsius, Private()] | None = None,
) -> None:
    """Log a household visit in the current round; a fever alerts the leaders."""
    grid = await _check_grid(ctx, household)
    # A fever temperature under another status is recorded as the fever it is, and said so:
    # never "ok" in the record and "fever" in the alert.
    corrected = status != "fever" and is_fever(status, temp)
    if corrected:
        status = "fever"
    again = await ctx.db.scalar(
        SCREENED_BEFORE, {"household_id": household.id, "round_no": grid.round_no}
    )
    row = models.Screening(
        community_id=grid.community_id, grid_id=grid.id, household_id=household.id,
        round_no=grid.round_no, status=status, people=people, temperature=temp, note=note,
        by_id=ctx.person.id, at=ctx.now,
    )
    ctx.db.add(row)
    await ctx.db.flush()
    fever = is_fever(status, temp)
    told = 0
    if fever:
        told = await alert_health_team(
            ctx, grid, "screening/fever_alert", sender=ctx.person, origin=ctx.chat,
            screening=row, household=household.code, by=ctx.person.label,
        )
    ctx.reply(
        "screening/screened", household=household.code, status=status, people=people,
        again=bool(again), corrected=corrected, fever=fever, told=told,
        coverage=await grid_coverage(ctx.db, grid),
    )


@command("round new", role=Role.LEADER, where=Where.GRID, aliases=("轮次",), confirm=True)
async def round_new(ctx: Context) -> None:
    """Start a new screening round for this grid; coverage counts again from zero."""
    grid = ctx.require_grid()
    finished = await grid_coverage(ctx.db, grid)
    grid.round_no += 1
    grid.round_started_at = ctx.now
    ctx.reply("screening/round_started", grid=grid, finished=finished)


@command("visitor", role=Role.MEMBER, where=Where.GRID, aliases=("访客", "外来"))
async def visitor(
    ctx: Context,
    household: HouseholdRef,
    note: Text = "",
    *,
    from_: Annotated[str, Place()] = "",
) -> None:
    """Log an outsider visiting a household."""
    grid = await _check_grid(ctx, household)
    ctx.db.add(models.Visitor(
        community_id=grid.community_id, grid_id=grid.id, household_id=household.id,
        origin=from_, note=note, by_id=ctx.person.id, at=ctx.now,
    ))
    await ctx.db.flush()
    today = await ctx.db.scalar(
        select(func.count()).select_from(models.Visitor).where(
            models.Visitor.grid_id == grid.id, models.Visitor.at >= _start_of_today(ctx)
        )
    )
    ctx.reply("screening/visitor_logged", household=household.code, origin=from_, today=today)


@command("vehicle", role=Role.MEMBER, where=Where.GRID, aliases=("车辆",))
async def vehicle(
    ctx: Context,
    plate: Plate,
    household: Annotated[models.Household, HouseholdIfCode()] | None = None,
    note: Text = "",
) -> None:
    """Log a vehicle entering, with the household it visits."""
    grid = await _check_grid(ctx, household) if household else ctx.require_grid()
    ctx.db.add(models.Vehicle(
        community_id=grid.community_id, grid_id=grid.id, plate=plate,
        household_id=household.id if household else None, note=note, by_id=ctx.person.id,
        at=ctx.now,
    ))
    await ctx.db.flush()
    today = await ctx.db.scalar(
        select(func.count()).select_from(models.Vehicle).where(
            models.Vehicle.grid_id == grid.id, models.Vehicle.at >= _start_of_today(ctx)
        )
    )
    ctx.reply("screening/vehicle_logged", plate=plate,
              household=household.code if household else None, today=today)


@command("coverage", role=Role.MEMBER, where=Where.COMMUNITY, aliases=("覆盖率",))
async def coverage(ctx: Context) -> None:
    """Households screened / total per building; key persons checked in / total."""
    community = ctx.require_community()
    grids = [ctx.grid] if ctx.grid else (
        await ctx.db.scalars(
            select(models.Grid).where(models.Grid.community_id == community.id)
            .order_by(models.Grid.code)
        )
    ).all()
    reports = []
    for grid in grids:
        follow = await follow_ups(ctx.db, ctx.now, models.KeyPerson.grid_id == grid.id)
        reports.append({
            "grid": grid,
            "coverage": await grid_coverage(ctx.db, grid),
            "keypersons": len(follow),
            "checked_in": sum(f.checked_in for f in follow),
            "overdue": sum(f.overdue for f in follow),
        })
    ctx.reply("screening/coverage", reports=reports,
              window=timedelta(minutes=community.followup_minutes))


# --- the digest -------------------------------------------------------------------------


@digest_section("screening", order=10, template="screening/digest")
async def digest(actions: Actions, grid: models.Grid, since: datetime, until: datetime) -> dict:
    """The current round's coverage and lagging buildings; fever screenings, visitors and
    vehicles of the period, for one grid."""
    in_period = (models.Screening.grid_id == grid.id, models.Screening.at > since,
                 models.Screening.at <= until)
    latest = select(func.max(models.Screening.id)).where(*in_period).group_by(
        models.Screening.household_id
    )
    fevers = (
        await actions.db.execute(
            select(models.Screening, models.Household.code)
            .join(models.Household, models.Household.id == models.Screening.household_id)
            .where(
                models.Screening.id.in_(latest),
                or_(models.Screening.status == "fever", models.Screening.temperature >= FEVER_AT),
            )
            .order_by(models.Screening.at)
        )
    ).all()
    visitors = await _logged(actions, models.Visitor, grid, since, until)
    vehicles = await _logged(actions, models.Vehicle, grid, since, until)
    covered = await grid_coverage(actions.db, grid)
    return {
        "coverage": covered,
        "fevers": fevers,
        "visitors": visitors,
        "vehicles": vehicles,
        "urgency": len(fevers) + (1 if covered.lagging else 0),
    }


async def _logged(actions: Actions, model, grid: models.Grid, since: datetime, until: datetime):
    """Visitors or vehicles of the period, with their household's code (or None)."""
    return (
        await actions.db.execute(
            select(model, models.Household.code)
            .outerjoin(models.Household, models.Household.id == model.household_id)
            .where(model.grid_id == grid.id, model.at > since, model.at <= until)
            .order_by(model.at)
        )
    ).all()

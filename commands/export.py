"""/export: a community's records as a CSV file, for handing upward.

UTF-8 with a byte-order mark (so that Excel opens Chinese correctly), column names in the
community's language, times in its time zone. Secretaries export the whole community,
leaders their grid, and only into a direct chat or the HQ chat (the file carries residents'
names and temperatures). `gridbot export` (bot/cli.py) writes the same file for operators.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import aliased

from bot.api import Actions, Choice, Context, Date, Reject, Role, Where, command
from bot.privacy import Viewer, may_see
from storage import models
from storage.queries import shift_hours

# The operator running `gridbot export` on the server sees what the database holds.
OPERATOR = Viewer(admin=True, person_id=0)

KINDS = ("screenings", "keypersons", "errands", "shifts", "supplies", "members")
Kind = Annotated[
    str,
    Choice(*KINDS, aliases={
        "排查": "screenings", "重点人员": "keypersons", "代办": "errands", "值班": "shifts",
        "物资": "supplies", "成员": "members",
    }),
]

# The columns of each export, in order; their names come from templates/<lang>/export/.
COLUMNS = {
    "screenings": ("grid", "household", "round", "status", "people", "temperature", "note",
                   "by", "at"),
    "keypersons": ("number", "grid", "household", "name", "reason", "started", "until", "ended",
                   "watcher", "checkins", "alerts", "last_checkin", "last_temperature",
                   "anonymised"),
    "errands": ("number", "grid", "text", "household", "due", "state", "posted_by", "posted_at",
                "claimed_by", "claimed_at", "done_at", "note"),
    "shifts": ("number", "grid", "post", "date", "start", "end", "slots", "taken", "on_duty",
               "waiting", "noshows"),
    "supplies": ("grid", "item", "category", "unit", "level", "minimum", "by", "at"),
    "members": ("grid", "person", "display_name", "role", "kind", "party", "work_unit", "since",
                "hours"),
}


@dataclass
class Export:
    name: str
    data: bytes
    rows: int


@command("export", role=Role.LEADER, where=Where.PRIVATE, aliases=("导出",))
async def export(
    ctx: Context, kind: Kind, *, from_: Date | None = None, to: Date | None = None
) -> None:
    """A CSV file of screenings, key persons, errands, shifts, supplies or members."""
    ctx.require_community()
    # A secretary exports the whole community; a leader, their grid.
    grid = None if ctx.role >= Role.SECRETARY else ctx.require_grid()
    made = await export_csv(ctx, kind, grid=grid, first=from_, last=to,
                            viewer=ctx.chat_viewer(ctx.chat))
    ctx.reply("export/sent", kind=kind, rows=made.rows, grid=grid, first=from_, last=to,
              file=(made.name, made.data))


async def export_csv(
    actions: Actions,
    kind: str,
    *,
    grid: models.Grid | None = None,
    first: date | None = None,
    last: date | None = None,
    viewer: Viewer | None = OPERATOR,
) -> Export:
    """The CSV file of one kind of record of `actions.community` (or one grid of it), for the
    days `first`..`last` (inclusive, in the community's time zone). Health details are
    written only where the privacy rule lets `viewer` see them (an operator at the command
    line sees all)."""
    if first is not None and last is not None and first > last:
        raise Reject("export/bad_period", first=first, last=last)
    tz = ZoneInfo(actions.tz)
    since = datetime.combine(first, time(0), tz) if first else None
    until = datetime.combine(last + timedelta(days=1), time(0), tz) if last else None
    rows = await ROWS[kind](actions, _Scope(actions.community, grid, since, until, viewer))
    headers = actions.render("export/columns", columns=COLUMNS[kind]).split("\n")
    labels = _labels(actions)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    for row in rows:
        writer.writerow([_cell(value, tz, labels) for value in row])
    name = f"{kind}-{grid.code if grid else 'all'}-{actions.today.isoformat()}.csv"
    return Export(name=name, data=out.getvalue().encode("utf-8-sig"), rows=len(rows))


@dataclass
class _Scope:
    community: models.Community
    grid: models.Grid | None
    since: datetime | None
    until: datetime | None
    viewer: Viewer | None

    def private(self, value: Any, subject: Any) -> Any:
        """A health detail, if the reader may see it (bot/privacy.py); else left empty."""
        return value if may_see(self.viewer, subject) else None

    def where(self, model: Any, moment: Any | None = None) -> list:
        conditions = [model.community_id == self.community.id]
        if self.grid is not None:
            conditions.append(model.grid_id == self.grid.id)
        if moment is not None and self.since is not None:
            conditions.append(moment >= self.since)
        if moment is not None and self.until is not None:
            conditions.append(moment < self.until)
        return conditions


@dataclass(frozen=True)
class _Label:
    """A value shown through the community's words for it (a state, a status)."""

    group: str
    key: str | None


def _labels(actions: Actions) -> dict[str, str]:
    lines = actions.render("export/values").split("\n")
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _cell(value: Any, tz: ZoneInfo, labels: dict[str, str]) -> str:
    if value is None:
        return ""
    if isinstance(value, _Label):
        return "" if value.key is None else labels.get(f"{value.group}.{value.key}", value.key)
    if isinstance(value, bool):
        return labels.get(f"yesno.{str(value).lower()}", str(value))
    if isinstance(value, datetime):
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --- the rows of each kind --------------------------------------------------------------


async def _screenings(actions: Actions, scope: _Scope) -> list[tuple]:
    rows = await actions.db.execute(
        select(models.Screening, models.Grid.code, models.Household.code, models.Person)
        .join(models.Grid, models.Grid.id == models.Screening.grid_id)
        .join(models.Household, models.Household.id == models.Screening.household_id)
        .join(models.Person, models.Person.id == models.Screening.by_id)
        .where(*scope.where(models.Screening, models.Screening.at))
        .order_by(models.Screening.at, models.Screening.id)
    )
    return [
        (grid, household, s.round_no, _Label("status", s.status), s.people,
         scope.private(s.temperature, s), scope.private(s.note, s), person.label, s.at)
        for s, grid, household, person in rows.all()
    ]


async def _keypersons(actions: Actions, scope: _Scope) -> list[tuple]:
    kp = models.KeyPerson
    conditions = scope.where(kp)
    if scope.until is not None:
        conditions.append(kp.started_at < scope.until)
    if scope.since is not None:  # observations that overlap the period
        conditions.append((kp.ended_at.is_(None)) | (kp.ended_at >= scope.since))
    counts = (
        select(
            models.CheckIn.key_person_id,
            func.count().label("checkins"),
            func.sum(case((models.CheckIn.alert.is_(True), 1), else_=0)).label("alerts"),
            func.max(models.CheckIn.id).label("last_id"),
        )
        .group_by(models.CheckIn.key_person_id)
        .subquery()
    )
    last = aliased(models.CheckIn)
    rows = await actions.db.execute(
        select(kp, models.Grid.code, models.Household.code, models.Person,
               counts.c.checkins, counts.c.alerts, last)
        .join(models.Grid, models.Grid.id == kp.grid_id)
        .join(models.Household, models.Household.id == kp.household_id)
        .outerjoin(models.Person, models.Person.id == kp.watcher_id)
        .outerjoin(counts, counts.c.key_person_id == kp.id)
        .outerjoin(last, last.id == counts.c.last_id)
        .where(*conditions)
        .order_by(kp.number)
    )
    return [
        (f"K{k.number}", grid, household, scope.private(k.name, k),
         scope.private(_Label("reason", k.reason), k), k.started_at, k.until, k.ended_at,
         watcher.label if watcher else None, checkins or 0, int(alerts or 0),
         c.at if c else None, scope.private(c.temperature, k) if c else None,
         k.anonymised_at is not None)
        for k, grid, household, watcher, checkins, alerts, c in rows.all()
    ]


async def _errands(actions: Actions, scope: _Scope) -> list[tuple]:
    poster, claimer = aliased(models.Person), aliased(models.Person)
    rows = await actions.db.execute(
        select(models.Errand, models.Grid.code, models.Household.code, poster, claimer)
        .join(models.Grid, models.Grid.id == models.Errand.grid_id)
        .outerjoin(models.Household, models.Household.id == models.Errand.household_id)
        .join(poster, poster.id == models.Errand.posted_by_id)
        .outerjoin(claimer, claimer.id == models.Errand.claimed_by_id)
        .where(*scope.where(models.Errand, models.Errand.posted_at))
        .order_by(models.Errand.number)
    )
    return [
        (f"E{e.number}", grid, e.text, household, e.due_at, _Label("state", e.state),
         by.label, e.posted_at, taker.label if taker else None, e.claimed_at, e.done_at,
         e.done_note)
        for e, grid, household, by, taker in rows.all()
    ]


async def _shifts(actions: Actions, scope: _Scope) -> list[tuple]:
    rows = (
        await actions.db.execute(
            select(models.Shift, models.Grid.code, models.DutyPost.name)
            .join(models.Grid, models.Grid.id == models.Shift.grid_id)
            .join(models.DutyPost, models.DutyPost.id == models.Shift.post_id)
            .where(*scope.where(models.Shift, models.Shift.starts_at))
            .order_by(models.Shift.starts_at, models.Shift.number)
        )
    ).all()
    signups: dict[int, list[tuple[str, str]]] = {}
    if rows:
        found = await actions.db.execute(
            select(models.SignUp.shift_id, models.SignUp.state, models.Person)
            .join(models.Person, models.Person.id == models.SignUp.person_id)
            .where(models.SignUp.shift_id.in_([s.id for s, _, _ in rows]))
            .order_by(models.SignUp.at, models.SignUp.id)
        )
        for shift_id, state, person in found.all():
            signups.setdefault(shift_id, []).append((state, person.label))
    tz = ZoneInfo(actions.tz)
    out = []
    for s, grid, post in rows:
        people = signups.get(s.id, [])
        holders = [label for state, label in people if state == "slot"]
        out.append((
            f"S{s.number}", grid, post, s.starts_at.astimezone(tz).date(),
            s.starts_at.astimezone(tz).strftime("%H:%M"), s.ends_at.astimezone(tz).strftime("%H:%M"),
            s.slots, len(holders), " ".join(holders),
            sum(state == "waiting" for state, _ in people),
            " ".join(label for state, label in people if state == "noshow"),
        ))
    return out


async def _supplies(actions: Actions, scope: _Scope) -> list[tuple]:
    item = models.SupplyItem
    rows = await actions.db.execute(
        select(models.SupplyReport, item, models.Grid.code, models.Person)
        .join(item, item.id == models.SupplyReport.item_id)
        .join(models.Grid, models.Grid.id == item.grid_id)
        .join(models.Person, models.Person.id == models.SupplyReport.by_id)
        .where(*scope.where(item, models.SupplyReport.at))
        .order_by(models.SupplyReport.at, models.SupplyReport.id)
    )
    return [
        (grid, i.name, _Label("category", i.category), i.unit, r.level, i.minimum, person.label,
         r.at)
        for r, i, grid, person in rows.all()
    ]


async def _members(actions: Actions, scope: _Scope) -> list[tuple]:
    m = models.Membership
    conditions = [m.community_id == scope.community.id]
    if scope.grid is not None:
        conditions.append(m.grid_id == scope.grid.id)
    rows = await actions.db.execute(
        select(m, models.Grid.code, models.Person)
        .outerjoin(models.Grid, models.Grid.id == m.grid_id)
        .join(models.Person, models.Person.id == m.person_id)
        .where(*conditions)
        .order_by(models.Grid.code.is_(None), models.Grid.code, m.id)
    )
    # Duty hours credited for shifts that ended in the period.
    hours = await shift_hours(
        actions.db, community_id=scope.community.id,
        grid_id=scope.grid.id if scope.grid else None, since=scope.since, until=scope.until,
    )
    return [
        (grid, person.label, person.display_name, _Label("role", membership.role),
         _Label("kind", membership.kind) if membership.grid_id else None, membership.party,
         membership.unit, membership.created_at, round(hours.get(person.id, 0.0), 1))
        for membership, grid, person in rows.all()
    ]


ROWS: dict[str, Callable[[Actions, _Scope], Any]] = {
    "screenings": _screenings,
    "keypersons": _keypersons,
    "errands": _errands,
    "shifts": _shifts,
    "supplies": _supplies,
    "members": _members,
}

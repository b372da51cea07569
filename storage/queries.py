"""Queries shared by several domains. Figures are computed from the records, never kept as
counters that could drift."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TypeVar

from sqlalchemy import Executable, bindparam, distinct, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage import models

Row = TypeVar("Row", bound=models.Base)


async def load(db: AsyncSession, model: type[Row], key: int | str | tuple[object, ...]) -> Row:
    """The row of `model` whose primary key is `key`, which must exist (a foreign key points
    at it); a missing row is a broken database, not a user's mistake."""
    row = await db.get(model, key)
    if row is None:
        raise LookupError(f"{model.__name__} {key!r} does not exist")
    return row


async def next_number(db: AsyncSession, community_id: int, kind: str) -> int:
    """The next per-community number for `kind` ('E', 'S', 'K'). One upsert: the first number
    of a kind is created and later ones counted up in the same statement, which locks the
    counter (PostgreSQL) or runs under the write lock (SQLite), so no number is given twice,
    even when two commands ask for the very first one at once."""
    statement = _next_number_statement(db.get_bind().dialect.name)
    values = {"community_id": community_id, "kind": kind}
    return int((await db.execute(statement, values)).scalar_one())


@cache  # built once per kind of database: it runs for most commands
def _next_number_statement(dialect: str) -> Executable:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    counters = models.table(models.Counter)
    return (
        insert(counters)
        .values(community_id=bindparam("community_id"), kind=bindparam("kind"), last=1)
        .on_conflict_do_update(
            index_elements=[counters.c.community_id, counters.c.kind],
            set_={"last": counters.c.last + 1},
        )
        .returning(counters.c.last)
    )


@dataclass
class GridSummary:
    grid: models.Grid
    households: int
    members: int
    screened: int
    chats: int

    @property
    def coverage(self) -> int:
        """Percent of households screened in the current round."""
        return round(100 * self.screened / self.households) if self.households else 0


async def grid_summaries(db: AsyncSession, community: models.Community) -> list[GridSummary]:
    grids = (
        await db.scalars(
            select(models.Grid)
            .where(models.Grid.community_id == community.id)
            .order_by(models.Grid.code)
        )
    ).all()
    households = await _count_by_grid(
        db, models.Household.grid_id, models.Household.id, community.id
    )
    members = await _count_by_grid(
        db, models.Membership.grid_id, models.Membership.person_id, community.id,
        models.Membership.role.in_(("member", "leader")),
    )
    chats = await _count_by_grid(db, models.Chat.grid_id, models.Chat.id, community.id)
    screened = dict(
        (
            await db.execute(
                select(
                    models.Screening.grid_id, func.count(distinct(models.Screening.household_id))
                )
                .join(models.Grid, models.Grid.id == models.Screening.grid_id)
                .where(
                    models.Screening.community_id == community.id,
                    models.Screening.round_no == models.Grid.round_no,
                )
                .group_by(models.Screening.grid_id)
            )
        ).all()
    )
    return [
        GridSummary(
            grid=g, households=households.get(g.id, 0), members=members.get(g.id, 0),
            screened=screened.get(g.id, 0), chats=chats.get(g.id, 0),
        )
        for g in grids
    ]


async def _count_by_grid(db, grid_column, counted, community_id: int, *where) -> dict[int, int]:
    table = grid_column.class_
    rows = await db.execute(
        select(grid_column, func.count(distinct(counted)))
        .where(table.community_id == community_id, grid_column.is_not(None), *where)
        .group_by(grid_column)
    )
    return dict(rows.all())


async def health_team(db: AsyncSession, grid: models.Grid) -> list[models.Person]:
    """Who may see a grid's health details: its leaders and the community's secretaries."""
    return list(
        (
            await db.scalars(
                select(models.Person)
                .join(models.Membership, models.Membership.person_id == models.Person.id)
                .where(
                    models.Membership.community_id == grid.community_id,
                    ((models.Membership.grid_id == grid.id) & (models.Membership.role == "leader"))
                    | (models.Membership.role == "secretary"),
                )
                .distinct()
                .order_by(models.Person.id)
            )
        ).all()
    )


async def grid_chats(db: AsyncSession, grid_id: int) -> list[models.Chat]:
    """The chats linked to a grid (one per transport, usually just one), oldest first."""
    query = select(models.Chat).where(models.Chat.grid_id == grid_id).order_by(models.Chat.id)
    return list((await db.scalars(query)).all())


async def community_grid_chats(
    db: AsyncSession, community_id: int
) -> list[tuple[models.Chat, models.Grid]]:
    """Every chat linked to a grid of the community, with its grid, in grid-code order."""
    rows = await db.execute(
        select(models.Chat, models.Grid)
        .join(models.Grid, models.Grid.id == models.Chat.grid_id)
        .where(models.Chat.community_id == community_id)
        .order_by(models.Grid.code, models.Chat.id)
    )
    return [(chat, grid) for chat, grid in rows.all()]


async def shift_hours(
    db: AsyncSession,
    *,
    community_id: int,
    grid_id: int | None = None,
    person_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[int, float]:
    """Hours of duty credited per person: shifts whose hours were credited after they ended
    (`Shift.credited_at`), where the person held a slot (`SignUp.state == 'slot'`; a no-show
    is not credited), filtered by the shift's end time `since <= ends_at < until`."""
    query = (
        select(models.SignUp.person_id, models.Shift.starts_at, models.Shift.ends_at)
        .join(models.Shift, models.Shift.id == models.SignUp.shift_id)
        .where(
            models.Shift.community_id == community_id,
            models.Shift.credited_at.is_not(None),
            models.SignUp.state == "slot",
        )
    )
    if grid_id is not None:
        query = query.where(models.Shift.grid_id == grid_id)
    if person_id is not None:
        query = query.where(models.SignUp.person_id == person_id)
    if since is not None:
        query = query.where(models.Shift.ends_at >= since)
    if until is not None:
        query = query.where(models.Shift.ends_at < until)
    hours: dict[int, float] = {}
    for person, start, end in (await db.execute(query)).all():
        hours[person] = hours.get(person, 0.0) + (end - start).total_seconds() / 3600
    return hours

"""Setting up communities, grids, households and roles, and the community's settings."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import Annotated, Literal

from sqlalchemy import delete, func, select

from bot.api import (
    ArgError,
    Clock,
    Context,
    Converter,
    ExistingGrid,
    GridCode,
    HouseholdCode,
    Int,
    Interval,
    NewGridCode,
    PersonRef,
    Refused,
    Reject,
    Role,
    Text,
    Where,
    Zone,
    command,
    convert,
)
from commands.members import hand_back_work
from storage import models
from storage.households import building_of, normalise_household, pattern_codes
from storage.queries import grid_summaries

MAX_HOUSEHOLDS_AT_ONCE = 5000


@command("community", role=Role.ADMIN, where=Where.GROUP, aliases=("社区",))
async def community(ctx: Context, name: Text) -> None:
    """Create a community; this chat becomes its HQ chat and you its secretary."""
    if ctx.chat.community_id is not None:
        raise Reject("setup/chat_taken")
    created = models.Community(
        name=name, tz=ctx.app.config.tz, lang=ctx.app.config.lang, created_at=ctx.now
    )
    ctx.db.add(created)
    await ctx.db.flush()
    created.hq_chat_id = ctx.chat.id
    ctx.chat.community_id = created.id
    ctx.db.add(models.Membership(
        community_id=created.id, person_id=ctx.person.id, role="secretary", created_at=ctx.now,
    ))
    ctx.community = created
    ctx.reply("setup/community_created", community=created)
    ctx.emit("community_changed", community_id=created.id)


@command("grid add", role=Role.SECRETARY, where=Where.COMMUNITY)
async def grid_add(ctx: Context, code: NewGridCode, name: Text) -> None:
    """Create a grid."""
    community = ctx.require_community()
    exists = await ctx.db.scalar(
        select(models.Grid).where(models.Grid.community_id == community.id, models.Grid.code == code)
    )
    if exists:
        raise Reject("setup/grid_exists", code=code)
    ctx.db.add(models.Grid(
        community_id=community.id, code=code, name=name, round_started_at=ctx.now,
        created_at=ctx.now,
    ))
    ctx.reply("setup/grid_added", code=code, name=name)


class LinkableGrid(ExistingGrid):
    """A grid code typed in a chat not linked yet: a grid of the caller's community, or of
    whichever of their communities has that code when they work in several."""

    async def convert(self, ctx: Context, word: str) -> models.Grid:
        if ctx.community is not None or not ctx.communities:
            return await super().convert(ctx, word)
        code = await GridCode().convert(ctx, word)
        found = (await ctx.db.execute(
            select(models.Grid, models.Community)
            .join(models.Community, models.Community.id == models.Grid.community_id)
            .where(models.Grid.code == code,
                   models.Grid.community_id.in_([c.id for c in ctx.communities]))
        )).all()
        if len(found) != 1:
            raise Reject("core/which_community", communities=ctx.communities)
        grid, ctx.community = found[0]
        return grid


@command("grid link", role=Role.LEADER, where=Where.GROUP, role_grid="grid", confirmable=True)
async def grid_link(ctx: Context, grid: Annotated[models.Grid, LinkableGrid()]) -> None:
    """Bind this chat to a grid (moving it from another grid needs the secretary)."""
    community = ctx.require_community()
    if ctx.chat.id == community.hq_chat_id:
        raise Reject("setup/hq_not_grid")
    if ctx.chat.community_id not in (None, community.id):
        raise Reject("setup/chat_taken")
    if ctx.chat.grid_id not in (None, grid.id):
        # A linked chat is not taken over: only a secretary moves it, after a question
        # that names both grids.
        current = await ctx.db.get(models.Grid, ctx.chat.grid_id)
        if ctx.role_in(None) < Role.SECRETARY:
            raise Refused(Role.SECRETARY)
        ctx.confirm("setup/relink_confirm", current=current, grid=grid)
    ctx.chat.community_id = community.id
    ctx.chat.grid_id = grid.id
    ctx.grid = grid
    ctx.reply("setup/grid_linked", grid=grid, community=community)


@command("grid list", role=Role.MEMBER, where=Where.COMMUNITY, default=True)
async def grid_list(ctx: Context) -> None:
    """Grids with households, members and coverage."""
    community = ctx.require_community()
    ctx.reply("setup/grid_list", community=community, grids=await grid_summaries(ctx.db, community))


class CodeOrBuilding(Converter):
    """A household code (`3-2-101`), or a building (`3`) for the units= floors= rooms= form."""

    placeholder = "household"

    async def convert(self, ctx: Context, word: str) -> str:
        if re.fullmatch(r"[0-9A-Za-z]{1,8}", word):
            return word.upper()
        return await HouseholdCode().convert(ctx, word)


@command("household add", role=Role.LEADER, where=Where.GRID, aliases=("住户",))
async def household_add(
    ctx: Context,
    *codes: Annotated[str, CodeOrBuilding()],
    units: Int | None = None,
    floors: Int | None = None,
    rooms: Int | None = None,
) -> None:
    """Add households by code (3-2-101 3-2-102), or a whole building (3 units=2 floors=6 rooms=2)."""
    pattern = (units, floors, rooms)
    if any(v is not None for v in pattern):
        if None in pattern or len(codes) != 1 or "-" in codes[0]:
            raise ArgError("building_pattern")
        await _add_households(ctx, _building_codes(codes[0], units, floors, rooms))
        return
    buildings = [c for c in codes if "-" not in c]
    if buildings:
        raise ArgError("household_code", word=buildings[0])
    await _add_households(ctx, list(codes))


def _building_codes(building: str, units: int, floors: int, rooms: int) -> list[str]:
    if not (1 <= units <= 50 and 1 <= floors <= 100 and 1 <= rooms <= 99):
        raise ArgError("building_range")
    if units * floors * rooms > MAX_HOUSEHOLDS_AT_ONCE:
        raise Reject("setup/too_many", limit=MAX_HOUSEHOLDS_AT_ONCE)
    return pattern_codes(building, units, floors, rooms)


@command("household import", role=Role.LEADER, where=Where.GRID)
async def household_import(ctx: Context) -> None:
    """Add the households of an attached CSV register."""
    files = ctx.message.attachments
    if not files:
        raise Reject("setup/import_needs_file")
    try:
        text = files[0].data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = files[0].data.decode("gb18030")
        except UnicodeDecodeError:
            raise Reject("setup/import_bad_file", name=files[0].name) from None
    codes, bad = _codes_from_csv(text)
    if not codes and not bad:
        raise Reject("setup/import_empty", name=files[0].name)
    if len(codes) > MAX_HOUSEHOLDS_AT_ONCE:
        raise Reject("setup/too_many", limit=MAX_HOUSEHOLDS_AT_ONCE)
    await _add_households(ctx, codes, bad_rows=bad)


HEADERS_CODE = {"household", "code", "户号", "住户", "门牌"}
HEADERS_PARTS = (("building", "楼栋", "楼号", "栋"), ("unit", "单元"), ("room", "房号", "室", "房间"))


def _codes_from_csv(text: str) -> tuple[list[str], list[int]]:
    """Household codes of a CSV register: a code column, or building/unit/room columns, or
    codes in the first column with no header. Returns the codes and the bad line numbers."""
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        return [], []
    header = [cell.strip().lower() for cell in rows[0]]
    code_col = next((i for i, h in enumerate(header) if h in HEADERS_CODE), None)
    part_cols = [next((i for i, h in enumerate(header) if h in names), None) for names in HEADERS_PARTS]
    has_header = code_col is not None or None not in part_cols
    codes: list[str] = []
    bad: list[int] = []
    for line, row in enumerate(rows[1:] if has_header else rows, start=2 if has_header else 1):
        cells = [cell.strip() for cell in row]
        if code_col is None and None not in part_cols:
            try:
                raw = "-".join(cells[i] for i in part_cols)
            except IndexError:
                raw = ""
        else:
            index = code_col or 0
            raw = cells[index] if index < len(cells) else ""
        code = normalise_household(raw)
        if code is None:
            bad.append(line)
        else:
            codes.append(code)
    return codes, bad


async def _add_households(ctx: Context, codes: list[str], bad_rows: list[int] | None = None) -> None:
    community = ctx.require_community()
    grid = ctx.require_grid()
    wanted = list(dict.fromkeys(codes))  # keeps order, drops repeats
    existing = {
        code: grid_id
        for code, grid_id in (
            await ctx.db.execute(
                select(models.Household.code, models.Household.grid_id).where(
                    models.Household.community_id == community.id,
                    models.Household.code.in_(wanted),
                )
            )
        ).all()
    }
    added = [code for code in wanted if code not in existing]
    ctx.db.add_all(
        models.Household(
            community_id=community.id, grid_id=grid.id, code=code, building=building_of(code),
            created_at=ctx.now,
        )
        for code in added
    )
    await ctx.db.flush()
    total = await ctx.db.scalar(
        select(func.count()).select_from(models.Household).where(models.Household.grid_id == grid.id)
    )
    ctx.reply(
        "setup/households_added",
        grid=grid,
        added=added,
        already=[c for c in wanted if existing.get(c) == grid.id],
        elsewhere=[c for c in wanted if c in existing and existing[c] != grid.id],
        bad_rows=bad_rows or [],
        total=total,
    )


@command("role", role=Role.LEADER, where=Where.COMMUNITY, aliases=("角色",))
async def role(
    ctx: Context, person: PersonRef, role: Literal["secretary", "leader", "member", "none"]
) -> None:
    """Give or take a role: secretary (or none) in the HQ chat; leader, member or none in a
    grid chat. Taken away, it counts at once."""
    community = ctx.require_community()
    in_hq = ctx.chat.id == community.hq_chat_id
    grid = None if role == "secretary" or (role == "none" and in_hq) else ctx.grid
    if grid is None and (role in ("leader", "member") or not in_hq):
        raise Reject("setup/role_needs_grid")
    current = await ctx.db.scalar(
        select(models.Membership).where(
            models.Membership.community_id == community.id,
            models.Membership.person_id == person.id,
            models.Membership.grid_id.is_(None) if grid is None else models.Membership.grid_id == grid.id,
        )
    )
    # A leader sets members of their own grid; leaders and secretaries are the secretary's.
    touches_leaders = role in ("secretary", "leader") or grid is None or (
        current is not None and current.role == "leader"
    )
    if touches_leaders and ctx.role < Role.SECRETARY:
        raise Refused(Role.SECRETARY)
    if role != "none":
        if current is None:
            ctx.db.add(models.Membership(
                community_id=community.id, grid_id=grid.id if grid else None,
                person_id=person.id, role=role, created_at=ctx.now,
            ))
        else:
            current.role = role
        ctx.reply("setup/role_set", person=person.label, role=role, grid=grid, community=community)
        return
    if ctx.app.people.is_admin(person):
        raise Reject("setup/role_admin", person=person.label)
    if current is None:
        raise Reject("setup/role_nothing", person=person.label, grid=grid)
    if grid is None and person.id == ctx.person.id:
        raise Reject("setup/role_self")
    if grid is None and await _secretaries(ctx, community) <= 1:
        raise Reject("setup/last_secretary", person=person.label)
    await ctx.db.execute(delete(models.Membership).where(models.Membership.id == current.id))
    handed = {"claimed": 0, "watching": 0}
    for lost in [grid] if grid else await _grids_without_role(ctx, community, person):
        for key, count in (await hand_back_work(ctx, person, lost)).items():
            handed[key] += count
    ctx.reply("setup/role_removed", person=person.label, grid=grid, **handed)


async def _secretaries(ctx: Context, community: models.Community) -> int:
    return int(await ctx.db.scalar(
        select(func.count()).select_from(models.Membership).where(
            models.Membership.community_id == community.id, models.Membership.role == "secretary"
        )
    ) or 0)


async def _grids_without_role(
    ctx: Context, community: models.Community, person: models.Person
) -> list[models.Grid]:
    """The community's grids where the person holds no role (any more)."""
    kept = select(models.Membership.grid_id).where(
        models.Membership.person_id == person.id, models.Membership.grid_id.is_not(None)
    )
    return list(await ctx.db.scalars(
        select(models.Grid).where(models.Grid.community_id == community.id, models.Grid.id.not_in(kept))
    ))


# Bounds of the /set values given as durations or numbers (retentions are bounded below in
# RETENTION_BOUNDS, shiftremind by the shifts domain); widening a time window a lot (over
# CONFIRM_FACTOR) lets work go unnoticed for longer, so it is asked again.
SETTING_BOUNDS: dict[str, tuple[object, object]] = {
    "followup": (timedelta(hours=1), timedelta(days=7)),
    "claim": (timedelta(minutes=10), timedelta(days=3)),
    "maxhours": (1, 24),
}
CONFIRM_FACTOR = 2
WINDOWS = {  # the current value of each time window
    "followup": lambda c: timedelta(minutes=c.followup_minutes),
    "claim": lambda c: timedelta(minutes=c.claim_minutes),
}
# Settings that, shortened, remove health data sooner: asked again before they change.
RETENTION_SETTINGS = {"retention": "retention_days", "keypersonretention": "anonymise_days"}
RETENTION_BOUNDS = {"retention": (7, 3650), "keypersonretention": (1, 365)}  # days


@command("set", role=Role.SECRETARY, where=Where.COMMUNITY, aliases=("设置",), confirmable=True)
async def set_(
    ctx: Context,
    key: Literal[
        "digest", "tz", "lang", "followup", "claim", "maxhours", "shiftremind", "retention",
        "keypersonretention",
    ],
    value: str,
) -> None:
    """Change a setting: digest 20:00, tz, lang zh|en, followup 24h, claim 3h, maxhours 10,
    shiftremind 1h, retention 90d, keypersonretention 28d."""
    community = ctx.require_community()
    parsers = {
        "digest": (Clock, lambda v: setattr(community, "digest_time", v.strftime("%H:%M"))),
        "tz": (Zone, lambda v: setattr(community, "tz", v)),
        "lang": (Literal["zh", "en"], lambda v: setattr(community, "lang", v)),
        "followup": (Interval, lambda v: setattr(community, "followup_minutes", _minutes(v))),
        "claim": (Interval, lambda v: setattr(community, "claim_minutes", _minutes(v))),
        "maxhours": (Int, lambda v: setattr(community, "max_hours", _hours(v))),
        "shiftremind": (
            Interval, lambda v: setattr(community, "shift_remind_minutes", _remind(v, value))
        ),
    }
    for name, column in RETENTION_SETTINGS.items():
        parsers[name] = (Interval, lambda v, c=column, n=name: setattr(community, c, _days(v, n)))
    kind, apply = parsers[key]
    parsed = await convert(ctx, kind, value)
    if key in SETTING_BOUNDS:
        low, high = SETTING_BOUNDS[key]
        if not low <= parsed <= high:
            raise ArgError("setting_range", key=key, word=value, low=low, high=high)
    if key in WINDOWS and parsed > WINDOWS[key](community) * CONFIRM_FACTOR:
        ctx.confirm("setup/confirm_setting", key=key, old=WINDOWS[key](community), new=parsed)
    if key in RETENTION_SETTINGS:
        days, current = _days(parsed, key), getattr(community, RETENTION_SETTINGS[key])
        if days < current:
            # Health data older than the new limit goes at the next retention run, for good.
            ctx.confirm("setup/confirm_shorter", key=key, days=days, current=current)
    apply(parsed)
    await ctx.db.flush()
    ctx.reply("setup/setting_changed", key=key, community=community)
    ctx.emit("community_changed", community_id=community.id)


def _minutes(value: timedelta) -> int:
    return int(value.total_seconds() // 60)


def _hours(value: int) -> int:
    if not 1 <= value <= 24:
        raise ArgError("range", word=value, low=1, high=24)
    return value


def _remind(value: timedelta, word: str) -> int:
    """A shift reminder between 5 minutes and a day before the start."""
    if not timedelta(minutes=5) <= value <= timedelta(hours=24):
        raise ArgError("range", word=word, low="5m", high="24h")
    return _minutes(value)


def _days(value: timedelta, key: str = "retention") -> int:
    low, high = RETENTION_BOUNDS[key]
    if value < timedelta(days=1):
        raise ArgError("retention", word=f"{_minutes(value)}m")
    if not low <= value.days <= high:
        raise ArgError("range", word=f"{value.days}d", low=f"{low}d", high=f"{high}d")
    return value.days

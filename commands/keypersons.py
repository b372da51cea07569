"""Key persons (`K<n>`): one watcher each, daily check-ins, alerts and overdue reminders.

Names, temperatures and symptoms are private: a grid's group chat sees `K12` and the
household; the details go by direct message to the watcher, the grid's leaders and the
community's secretaries.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select

from bot.api import (
    Actions,
    Celsius,
    Choice,
    Context,
    Date,
    HouseholdRef,
    JobContext,
    KeyPersonRef,
    PersonRef,
    Private,
    Reject,
    Role,
    Text,
    Where,
    command,
    digest_section,
    hand_back,
    job,
)
from storage import models
from storage.queries import grid_chats, health_team, load, next_number

FEVER_AT = 37.3  # °C: a temperature at or above this is an alert

# How people say "no symptoms" at a check-in: none of these raises an alert.
NO_SYMPTOMS = {
    "ok", "正常", "无", "无症状", "没有症状", "无异常", "良好", "好", "很好", "健康", "没有", "没",
    "无不适", "normal", "fine", "good", "none", "no", "nil", "-", "—", "/",
}
# Symptom words, zh and en, to one name each (shown in the community's language).
SYMPTOMS = {
    "cough": ("咳嗽", "cough", {"咳嗽", "咳", "干咳", "cough", "coughing"}),
    "fever": ("发热", "fever", {"发热", "发烧", "高烧", "低烧", "fever", "feverish"}),
    "fatigue": ("乏力", "fatigue", {"乏力", "疲劳", "无力", "疲倦", "fatigue", "tired", "weak"}),
    "headache": ("头痛", "headache", {"头痛", "头疼", "headache"}),
    "diarrhoea": ("腹泻", "diarrhoea", {"腹泻", "拉肚子", "diarrhoea", "diarrhea"}),
    "sore-throat": ("咽痛", "sore throat", {"咽痛", "嗓子疼", "喉咙痛", "咽喉痛", "sore-throat"}),
    "smell-taste": ("嗅觉/味觉减退", "loss of smell or taste",
                    {"嗅觉减退", "味觉减退", "嗅觉丧失", "味觉丧失", "嗅觉/味觉减退", "anosmia"}),
    "breath": ("气短", "shortness of breath", {"气短", "呼吸困难", "胸闷", "breathless"}),
    "nose": ("流涕", "runny nose", {"流涕", "流鼻涕", "鼻塞", "runny-nose"}),
    "aches": ("肌肉酸痛", "aches", {"肌肉酸痛", "全身酸痛", "酸痛", "aches"}),
    "nausea": ("恶心", "nausea", {"恶心", "呕吐", "nausea", "vomiting"}),
    "chills": ("畏寒", "chills", {"畏寒", "发冷", "chills"}),
}
_SYMPTOM_WORDS = {word: key for key, (_, _, words) in SYMPTOMS.items() for word in words}
_SEPARATORS = re.compile(r"[\s,，、;；。]+")


@dataclass
class Symptoms:
    """What a check-in's words say: symptoms recognised, and words stored as written."""

    known: list[str]
    unknown: list[str]

    @property
    def any(self) -> bool:
        return bool(self.known or self.unknown)

    def text(self, lang: str) -> str:
        names = [SYMPTOMS[key][0] if lang == "zh" else SYMPTOMS[key][1] for key in self.known]
        return ("、" if lang == "zh" else ", ").join(names + self.unknown)


def read_symptoms(text: str) -> Symptoms:
    """Reads a check-in's free text with the fixed vocabulary: "no symptoms" words count as
    none; symptom words are recognised in Chinese or English; any other word is kept as
    written and counts as a symptom (the reply says so), since a missed symptom costs more
    than a needless alert."""
    known: list[str] = []
    unknown: list[str] = []
    for word in _SEPARATORS.split(text.strip()):
        key = word.lower()
        if not key or key in NO_SYMPTOMS:
            continue
        if key in _SYMPTOM_WORDS:
            if _SYMPTOM_WORDS[key] not in known:
                known.append(_SYMPTOM_WORDS[key])
        elif word not in unknown:
            unknown.append(word)
    return Symptoms(known, unknown)

Reason = Annotated[
    str,
    Choice(
        "epidemic-area", "home-observation", "fever", "close-contact",
        aliases={
            "疫区": "epidemic-area", "疫区返回": "epidemic-area", "疫区来返": "epidemic-area",
            "居家观察": "home-observation", "居家隔离": "home-observation",
            "发热": "fever", "密接": "close-contact", "密切接触": "close-contact",
            "密切接触者": "close-contact",
        },
    ),
]


@dataclass
class FollowUp:
    """An active key person with their latest check-in, as of `now`."""

    kp: models.KeyPerson
    household: str
    grid_code: str
    watcher: models.Person | None
    last: models.CheckIn | None
    window: timedelta
    now: datetime

    @property
    def due_at(self) -> datetime:
        return (self.last.at if self.last else self.kp.started_at) + self.window

    @property
    def overdue(self) -> bool:
        return self.now > self.due_at

    @property
    def late(self) -> timedelta:
        return self.now - self.due_at

    @property
    def checked_in(self) -> bool:
        """Checked in within the follow-up window."""
        return self.last is not None and not self.overdue


async def follow_ups(db, now: datetime, *where) -> list[FollowUp]:
    """Key persons under observation (filtered by `where`), with their latest check-in."""
    # The latest check-in of each, looked up per key person (an index seek), so the cost
    # follows the people under observation, not the whole history of check-ins.
    latest = (
        select(func.max(models.CheckIn.id))
        .where(models.CheckIn.key_person_id == models.KeyPerson.id)
        .correlate(models.KeyPerson)
        .scalar_subquery()
    )
    rows = await db.execute(
        select(
            models.KeyPerson, models.Household.code, models.Grid.code, models.Person,
            models.CheckIn, models.Community.followup_minutes,
        )
        .join(models.Household, models.Household.id == models.KeyPerson.household_id)
        .join(models.Grid, models.Grid.id == models.KeyPerson.grid_id)
        .join(models.Community, models.Community.id == models.KeyPerson.community_id)
        .outerjoin(models.Person, models.Person.id == models.KeyPerson.watcher_id)
        .outerjoin(models.CheckIn, models.CheckIn.id == latest)
        .where(models.KeyPerson.ended_at.is_(None), *where)
        .order_by(models.KeyPerson.number)
    )
    return [
        FollowUp(kp, household, grid_code, watcher, last, timedelta(minutes=minutes), now)
        for kp, household, grid_code, watcher, last, minutes in rows.all()
    ]


async def alert_health_team(
    actions: Actions,
    grid: models.Grid,
    template: str,
    /,
    *,
    sender: models.Person,
    origin: models.Chat | None,
    also: models.Person | None = None,
    **values,
) -> int:
    """Sends an alert by direct message to the grid's leaders and the secretaries (and
    `also`), except to the person who reported it. Returns how many were told."""
    people = {p.id: p for p in await health_team(actions.db, grid)}
    if also is not None:
        people.setdefault(also.id, also)
    people.pop(sender.id, None)
    for person in people.values():
        actions.tell(person, template, origin=origin, grid=grid, **values)
    return len(people)


# --- commands ---------------------------------------------------------------------------


@command("watch add", role=Role.MEMBER, where=Where.COMMUNITY, aliases=("重点",))
async def watch_add(
    ctx: Context,
    household: HouseholdRef,
    name: Annotated[str, Private()],
    reason: Reason,
    *,
    until: Date | None = None,
    watcher: PersonRef | None = None,
) -> None:
    """Register a key person → K<n>; the group sees only the ID and household."""
    community = ctx.require_community()
    grid = await load(ctx.db, models.Grid, household.grid_id)
    if ctx.grid is not None and grid.id != ctx.grid.id:
        raise Reject("keypersons/household_elsewhere", household=household.code, grid=grid)
    if until is not None and until < ctx.today:
        raise Reject("keypersons/until_past", until=until)
    watcher = watcher or ctx.person
    await _check_watcher(ctx, watcher, grid)
    kp = models.KeyPerson(
        community_id=grid.community_id,
        number=await next_number(ctx.db, grid.community_id, "K"),
        grid_id=grid.id, household_id=household.id, name=name, reason=reason,
        started_at=ctx.now, until=until, watcher_id=watcher.id, created_by_id=ctx.person.id,
    )
    ctx.db.add(kp)
    ctx.ref(f"K{kp.number}")
    window = timedelta(minutes=community.followup_minutes)
    ctx.reply("keypersons/added", kp=kp, household=household.code, watcher=watcher.label,
              window=window)
    if watcher.id != ctx.person.id:
        ctx.tell(watcher, "keypersons/assigned_to_you", origin=ctx.chat, kp=kp,
                 household=household.code, by=ctx.person.label, window=window)


@command("watch assign", role=Role.LEADER, where=Where.COMMUNITY)
async def watch_assign(ctx: Context, kp: KeyPersonRef, watcher: PersonRef) -> None:
    """Set the one watcher of a key person."""
    grid = await _active_here(ctx, kp)
    if kp.watcher_id == watcher.id:
        raise Reject("keypersons/already_watcher", kp=kp, watcher=watcher.label)
    await _check_watcher(ctx, watcher, grid)
    previous = await ctx.db.get(models.Person, kp.watcher_id) if kp.watcher_id else None
    kp.watcher_id = watcher.id
    kp.last_reminded_at = None  # an overdue person is the new watcher's to hear about
    household = kp.household
    ctx.ref(f"K{kp.number}")
    ctx.reply("keypersons/assigned", kp=kp, household=household.code, watcher=watcher.label)
    if watcher.id != ctx.person.id:
        ctx.tell(watcher, "keypersons/assigned_to_you", origin=ctx.chat, kp=kp,
                 household=household.code, by=ctx.person.label,
                 window=timedelta(minutes=ctx.require_community().followup_minutes))
    if previous is not None and previous.id != ctx.person.id:
        ctx.tell(previous, "keypersons/unassigned", origin=ctx.chat, kp=kp,
                 household=household.code, watcher=watcher.label)


@command("watch release", role=Role.LEADER, where=Where.COMMUNITY)
async def watch_release(ctx: Context, kp: KeyPersonRef) -> None:
    """End the observation of a key person."""
    await _active_here(ctx, kp)
    kp.ended_at = ctx.now
    household = kp.household
    ctx.ref(f"K{kp.number}")
    ctx.reply("keypersons/released", kp=kp, household=household.code)
    if kp.watcher_id is not None and kp.watcher_id != ctx.person.id:
        watcher = await load(ctx.db, models.Person, kp.watcher_id)
        ctx.tell(watcher, "keypersons/released", origin=ctx.chat, kp=kp, household=household.code)


@command("watch list", role=Role.MEMBER, where=Where.COMMUNITY, default=True)
async def watch_list(ctx: Context) -> None:
    """Key persons of this grid, mine first, with the last check-in; overdue marked."""
    community = ctx.require_community()
    scope = (
        models.KeyPerson.grid_id == ctx.grid.id if ctx.grid
        else models.KeyPerson.community_id == community.id
    )
    follow = await follow_ups(ctx.db, ctx.now, scope)
    follow.sort(key=lambda f: (f.kp.watcher_id != ctx.person.id, f.kp.number))
    ctx.reply(
        "keypersons/list", grid=ctx.grid, follow=follow, me=ctx.person.id,
        overdue=sum(f.overdue for f in follow),
        window=timedelta(minutes=community.followup_minutes),
    )


@command("checkin", role=Role.MEMBER, where=Where.COMMUNITY, aliases=("随访",))
async def checkin(
    ctx: Context,
    kp: KeyPersonRef,
    temp: Annotated[Celsius, Private()],
    symptoms: Annotated[Text, Private()] = "",
) -> None:
    """Daily follow-up of a key person; 37.3 °C or more, or a symptom, raises an alert."""
    if kp.ended_at is not None:
        raise Reject("keypersons/ended", kp=kp)
    grid = await load(ctx.db, models.Grid, kp.grid_id)
    watcher = await ctx.db.get(models.Person, kp.watcher_id) if kp.watcher_id else None
    # The one value-dependent rule: the watcher, or a leader of the key person's grid.
    if kp.watcher_id != ctx.person.id and (
        ctx.role_in(grid) < Role.LEADER
    ):
        raise Reject("keypersons/not_watcher", kp=kp, watcher=watcher.label if watcher else None)
    read = read_symptoms(symptoms)
    row = models.CheckIn(
        key_person_id=kp.id, temperature=temp, symptoms=read.text(ctx.lang),
        alert=temp >= FEVER_AT or read.any, by_id=ctx.person.id, at=ctx.now,
    )
    ctx.db.add(row)
    household = kp.household
    ctx.ref(f"K{kp.number}")
    told = 0
    if row.alert:
        told = await alert_health_team(
            ctx, grid, "keypersons/alert", sender=ctx.person, origin=ctx.chat, also=watcher,
            kp=kp, household=household.code, checkin=row, by=ctx.person.label,
        )
    ctx.reply(
        "keypersons/checked_in", kp=kp, household=household.code, checkin=row, told=told,
        unknown=read.unknown,
        next_due=ctx.now + timedelta(minutes=ctx.require_community().followup_minutes),
    )


async def _check_watcher(ctx: Context, person: models.Person, grid: models.Grid) -> None:
    """A watcher is someone of the grid's team (member or leader), or a secretary."""
    if ctx.app.people.is_admin(person):
        return
    if await ctx.app.people.role(ctx.db, person, ctx.community, grid) < Role.MEMBER:
        raise Reject("keypersons/watcher_not_member", person=person.label, grid=grid)


async def _active_here(ctx: Context, kp: models.KeyPerson) -> models.Grid:
    """The key person's grid; they must be under observation, and of this chat's grid."""
    if kp.ended_at is not None:
        raise Reject("keypersons/ended", kp=kp)
    grid = await load(ctx.db, models.Grid, kp.grid_id)
    if ctx.grid is not None and grid.id != ctx.grid.id:
        raise Reject("keypersons/elsewhere", kp=kp, grid=grid)
    return grid


@hand_back
async def hand_back_key_persons(actions: Actions, person: models.Person, grid: models.Grid) -> None:
    """Key persons watched by someone who no longer works in the grid go back to its
    leaders, who are told by direct message to assign a new watcher; nothing about them
    reaches the former watcher any more."""
    watched = (
        await actions.db.scalars(
            select(models.KeyPerson)
            .where(models.KeyPerson.grid_id == grid.id, models.KeyPerson.watcher_id == person.id,
                   models.KeyPerson.ended_at.is_(None))
            .order_by(models.KeyPerson.number)
        )
    ).all()
    if not watched:
        return
    team = [p for p in await health_team(actions.db, grid) if p.id != person.id]
    chats = await grid_chats(actions.db, grid.id)
    for kp in watched:
        kp.watcher_id = None
        kp.last_reminded_at = None
        household = await load(actions.db, models.Household, kp.household_id)
        for leader in team:
            actions.tell(leader, "keypersons/no_watcher", origin=chats[0] if chats else None,
                         kp=kp, household=household.code, grid=grid, former=person.label)


# --- the overdue sweep ------------------------------------------------------------------


async def next_follow_up_due(jc: JobContext) -> datetime | None:
    """When the overdue sweep next has work: an observation's last day over (midnight in the
    community's time zone), or a watched key person overdue and not reminded within the
    window (the manual clock's `due`, bot/scheduler.py)."""
    zones = dict((await jc.db.execute(select(models.Community.id, models.Community.tz))).all())
    moments = []
    for f in await follow_ups(jc.db, jc.now):
        kp = f.kp
        if kp.until is not None:
            moments.append(datetime.combine(kp.until + timedelta(days=1), time(),
                                            ZoneInfo(zones[kp.community_id])))
        if f.watcher is not None:
            reminder = f.due_at + timedelta.resolution  # overdue: strictly after `due_at`
            if kp.last_reminded_at is not None:
                reminder = max(reminder, kp.last_reminded_at + f.window)
            moments.append(reminder)
    return min(moments, default=None)


@job(every=timedelta(minutes=5), due=next_follow_up_due)
async def sweep_key_persons(jc: JobContext) -> None:
    """Ends observations past their `until` date, and reminds each watcher of an overdue
    key person once per follow-up window (marked in `last_reminded_at`, so a rerun after a
    restart sends nothing twice)."""
    communities: dict[int, models.Community] = {}
    for f in await follow_ups(jc.db, jc.now):
        kp = f.kp
        if kp.community_id not in communities:
            communities[kp.community_id] = await load(jc.db, models.Community, kp.community_id)
        local = dataclasses.replace(jc, community=communities[kp.community_id])
        if kp.until is not None and local.today > kp.until:
            kp.ended_at = jc.now
            if f.watcher is not None:
                local.tell(f.watcher, "keypersons/observation_over",
                           origin=await _grid_chat(jc, kp), kp=kp, household=f.household)
            continue
        if not f.overdue or f.watcher is None:
            continue
        if kp.last_reminded_at is not None and jc.now - kp.last_reminded_at < f.window:
            continue
        kp.last_reminded_at = jc.now
        local.tell(f.watcher, "keypersons/reminder", origin=await _grid_chat(jc, kp), f=f)


async def _grid_chat(jc: JobContext, kp: models.KeyPerson) -> models.Chat | None:
    """Where to say that a direct message could not be delivered."""
    chats = await grid_chats(jc.db, kp.grid_id)
    return chats[0] if chats else None


# --- the digest -------------------------------------------------------------------------


@digest_section("keypersons", order=20, template="keypersons/digest")
async def digest(actions: Actions, grid: models.Grid, since: datetime, until: datetime) -> dict:
    """Key persons overdue for a check-in, and the alerts of the period (the last 24 h), for
    one grid."""
    follow = await follow_ups(actions.db, until, models.KeyPerson.grid_id == grid.id)
    overdue = [f for f in follow if f.overdue]
    alerts = (
        await actions.db.execute(
            select(models.CheckIn, models.KeyPerson, models.Household.code)
            .join(models.KeyPerson, models.KeyPerson.id == models.CheckIn.key_person_id)
            .join(models.Household, models.Household.id == models.KeyPerson.household_id)
            .where(
                models.KeyPerson.grid_id == grid.id,
                # Only who was observed in the period: the grid's past key persons pile up.
                or_(models.KeyPerson.ended_at.is_(None), models.KeyPerson.ended_at > since),
                models.CheckIn.alert.is_(True),
                models.CheckIn.at > since,
                models.CheckIn.at <= until,
            )
            .order_by(models.CheckIn.at)
        )
    ).all()
    return {
        "active": len(follow),
        "checked_in": sum(f.checked_in for f in follow),
        "overdue": overdue,
        "alerts": alerts,
        "urgency": len(overdue) + len(alerts),
    }

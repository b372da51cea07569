"""The records: /undo, /forget, and the retention of residents' health data.

/undo works from the audit log alone: each entry lists every row its command wrote, with
the values before and after (storage/audit.py), so reversing a write needs no code per
command. An insert is undone by deleting the row, an update by restoring the values before,
a delete by putting the row back. Per-community numbers (`E7`) are never handed out again.

Retention removes health data from the database itself: a key person's name and reason
and their check-ins' temperatures and symptoms `anonymise_days` after the observation
ended; screenings' temperatures and notes, and welfare check-ins' notes (a worker's own
words, see clear_old_welfare_notes), after `retention_days`. The audit log's copies
(each entry's changes and the command line as typed) and the stored text of the messages
that carried them go too. IDs, households, dates and counts stay, so coverage and /history
still add up. These writes are bulk statements, which the audit capture does not copy.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from sqlalchemy import Date, DateTime, String, cast, delete, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import flag_modified

from bot.api import (
    Actions,
    Context,
    JobContext,
    KeyPersonRef,
    Refused,
    Reject,
    Role,
    Where,
    command,
    job,
)
from bot.args import Numbered
from commands.history import AnyItem
from storage import models
from storage.queries import load

UNDO_WINDOW = timedelta(minutes=10)
# Bookkeeping that an undo leaves alone: numbers are never handed out twice.
KEPT_TABLES = {"counters", "digests_sent", "audit_log", "leases"}
# Commands whose effect cannot be taken back (data removed for good), or that are undos.
NOT_UNDOABLE = {"undo", "forget", "community"}
# Items shown by their own ID in what /undo says; other rows are counted per table.
ITEM_TABLES = {"errands": "E", "shifts": "S", "key_persons": "K", "supply_needs": "N"}

MODELS: dict[str, type[models.Base]] = {
    m.class_.__tablename__: m.class_ for m in models.Base.registry.mappers
}
TABLE_ORDER = {t.name: i for i, t in enumerate(models.Base.metadata.sorted_tables)}
# (table, column) → the table a foreign key column points at.
FOREIGN_KEYS: dict[str, list[tuple[str, str]]] = {
    t.name: [(fk.parent.name, fk.column.table.name) for fk in t.foreign_keys]
    for t in models.Base.metadata.sorted_tables
}

RETENTION_EVERY = timedelta(hours=1)
RETENTION_BATCH = 5000  # screenings (welfare notes) cleared per community and run, at most
KEY_PERSON_PRIVATE = ("name", "reason")
CHECKIN_PRIVATE = ("temperature", "symptoms")
SCREENING_PRIVATE = ("note", "temperature")
WELFARE_PRIVATE = ("note",)


# --- /undo ------------------------------------------------------------------------------


@dataclass
class Undone:
    """One line of what /undo says: an item (`E5`) or a table's rows, what became of them."""

    table: str
    kind: str  # removed (an insert undone), restored (an update undone), reinstated
    label: str | None = None
    state: str | None = None  # the state restored, if the row has one
    reopened: bool = False  # a key person back under observation
    watcher: str | None = None  # a key person's watcher restored
    at: datetime | None = None
    count: int = 1


@command("undo", role=Role.RESIDENT, where=Where.COMMUNITY, aliases=("撤回", "撤销"))
async def undo(
    ctx: Context, item: Annotated[tuple[str, Numbered], AnyItem()] | None = None
) -> None:
    """Take back your last write of the last 10 minutes; leaders name an item of their grid (E5)."""
    community = ctx.require_community()
    if item is None:
        entry = await _own_last(ctx, community)
    else:
        entry = await _last_on(ctx, *item)
    if entry.person_id != ctx.person.id:
        await _may_undo_for_others(ctx, entry, item)
    if entry.person_id is None:
        raise Reject("records/by_job", refs=entry.refs)
    if entry.command in NOT_UNDOABLE:
        raise Reject("records/not_undoable", command=entry.command, refs=entry.refs)
    if ctx.now - entry.at > UNDO_WINDOW:
        raise Reject("records/too_late", command=entry.command, refs=entry.refs, at=entry.at,
                     window=UNDO_WINDOW)
    await _refuse_if_built_on(ctx, entry)
    nets = _net_changes(entry.changes)
    undone = await _describe(ctx, nets)
    try:
        async with ctx.db.begin_nested():
            reversed_ = await _reverse(ctx, nets)
    except IntegrityError:  # a row the audit log did not see still points at one undone
        reversed_ = False
    if not reversed_:
        raise Reject("records/changed_since", command=entry.command, refs=entry.refs)
    entry.undone_at = ctx.now
    for table, row_id in nets:
        if table == "communities":  # e.g. a digest time: schedules follow the setting
            ctx.emit("community_changed", community_id=row_id)
    ctx.record("audit_log", entry.id, before={"undone_at": None},
               after={"undone_at": ctx.now.isoformat()})
    ctx.ref(*entry.refs)
    author = await load(ctx.db, models.Person, entry.person_id)
    ctx.reply("records/undone", command=entry.command, refs=entry.refs, undone=undone,
              author=None if author.id == ctx.person.id else author.label,
              told=await _messages_sent(ctx, entry))


async def _own_last(ctx: Context, community: models.Community) -> models.AuditEntry:
    entry = await ctx.db.scalar(
        select(models.AuditEntry)
        .where(
            models.AuditEntry.person_id == ctx.person.id,
            models.AuditEntry.community_id == community.id,
            models.AuditEntry.undone_at.is_(None),
            models.AuditEntry.command != "undo",
        )
        .order_by(models.AuditEntry.id.desc())
        .limit(1)
        .with_for_update()  # two undos at once: the second waits, then finds it undone
    )
    if entry is None:
        raise Reject("records/nothing_to_undo")
    return entry


async def _last_on(ctx: Context, prefix: str, row: Numbered) -> models.AuditEntry:
    """The latest write on an item that is still in force (undos themselves aside)."""
    ref = f"{prefix}{row.number}"
    entry = await ctx.db.scalar(
        select(models.AuditEntry)
        .where(
            or_(models.AuditEntry.community_id == row.community_id,
                models.AuditEntry.community_id.is_(None)),
            _touches(row.__tablename__, row.id, ref),
            models.AuditEntry.undone_at.is_(None),
            models.AuditEntry.command != "undo",
        )
        .order_by(models.AuditEntry.id.desc())
        .limit(1)
        .with_for_update()
    )
    if entry is None:
        raise Reject("records/nothing_on_item", ref=ref)
    return entry


def _touches(table: str, row_id: int, ref: str | None = None):
    """Audit entries that name the item or wrote its row. The JSON is matched as text, as
    /history does: the same serialisation is stored on SQLite and PostgreSQL."""
    changes = cast(models.AuditEntry.changes, String).like(f'%"table": "{table}", "id": {row_id},%')
    if ref is None:
        return changes
    return or_(cast(models.AuditEntry.refs, String).like(f'%"{ref}"%'), changes)


async def _may_undo_for_others(
    ctx: Context, entry: models.AuditEntry, item: tuple[str, Numbered] | None
) -> None:
    """Another person's write: only by naming the item, as a leader of its grid or a
    secretary."""
    if item is None:
        raise Reject("records/nothing_to_undo")
    grid = await ctx.db.get(models.Grid, item[1].grid_id)
    if ctx.role_in(grid) < Role.LEADER:
        raise Refused(Role.LEADER)


async def _refuse_if_built_on(ctx: Context, entry: models.AuditEntry) -> None:
    """A later write still in force that touched the same rows, added rows pointing at them,
    or named the same item: undoing underneath it would pull the ground from under it."""
    rows = {(c["table"], _key(c["id"])) for c in entry.changes if c["table"] not in KEPT_TABLES}
    refs = set(entry.refs)
    later = (
        await ctx.db.scalars(
            select(models.AuditEntry)
            .where(
                models.AuditEntry.id > entry.id,
                models.AuditEntry.at >= entry.at,
                or_(models.AuditEntry.community_id == entry.community_id,
                    models.AuditEntry.community_id.is_(None)),
                models.AuditEntry.undone_at.is_(None),
                models.AuditEntry.command != "undo",
            )
            .order_by(models.AuditEntry.id)
        )
    ).all()
    for other in later:
        if refs & set(other.refs) or any(_builds_on(c, rows) for c in other.changes):
            who = await ctx.db.get(models.Person, other.person_id) if other.person_id else None
            raise Reject("records/built_on", refs=entry.refs, command=entry.command,
                         later=other.command, who=who.label if who else None, at=other.at)


def _builds_on(change: dict, rows: set[tuple[str, Any]]) -> bool:
    if (change["table"], _key(change["id"])) in rows:
        return True
    values = change.get("after") or {}
    return any(
        (table, values.get(column)) in rows
        for column, table in FOREIGN_KEYS.get(change["table"], ())
        if values.get(column) is not None
    )


def _key(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _net_changes(changes: list[dict]) -> dict[tuple[str, Any], dict]:
    """Per row written: its first and last operation, the values before the command (the
    earliest seen) and after it (the latest)."""
    nets: dict[tuple[str, Any], dict] = {}
    for change in changes:
        table = change["table"]
        if table in KEPT_TABLES or table not in MODELS:
            continue
        net = nets.setdefault((table, _key(change["id"])),
                              {"first": change["op"], "before": {}, "after": {}})
        for column, value in (change.get("before") or {}).items():
            net["before"].setdefault(column, value)
        net["after"].update(change.get("after") or {})
        net["last"] = change["op"]
    return nets


async def _reverse(ctx: Context, nets: dict[tuple[str, Any], dict]) -> bool:
    """Restores updated rows, then deletes inserted ones (children first), then puts deleted
    ones back (parents first). False, with nothing done, if a row is no longer as the command
    left it (changed by something the audit log did not see)."""
    restores: list[tuple[models.Base, dict]] = []
    removals: list[models.Base] = []
    reinserts: list[models.Base] = []
    for (table, row_id), net in nets.items():
        model = MODELS[table]
        current = await ctx.db.get(model, row_id, with_for_update=True)
        if net["first"] == "insert":
            if net["last"] == "delete":
                continue
            if current is None:
                return False
            removals.append(current)
        elif net["last"] == "delete":
            if current is not None:
                return False
            reinserts.append(model(**_revive_all(model, net["before"])))
        else:
            if current is None or not _unchanged(model, current, net["after"]):
                return False
            restores.append((current, _revive_all(model, net["before"])))
    for current, values in restores:
        for column, value in values.items():
            setattr(current, column, value)
    await ctx.db.flush()
    for row in sorted(removals, key=lambda r: -TABLE_ORDER[r.__tablename__]):
        if isinstance(row, Numbered):  # ITEM_TABLES
            # Its buttons and reactions (`/claim E5`) lead nowhere now.
            await ctx.db.execute(delete(models.PostedMessage).where(
                models.PostedMessage.community_id == row.community_id,
                models.PostedMessage.ref == f"{ITEM_TABLES[row.__tablename__]}{row.number}",
            ))
        await ctx.db.delete(row)
        await ctx.db.flush()
    for row in sorted(reinserts, key=lambda r: TABLE_ORDER[r.__tablename__]):
        ctx.db.add(row)
        await ctx.db.flush()
    return True


def _unchanged(model: type[models.Base], current: Any, after: dict) -> bool:
    revived = _revive_all(model, after)
    return all(getattr(current, column) == value for column, value in revived.items())


def _revive_all(model: type[models.Base], values: dict) -> dict:
    return {
        attr.key: _revive(attr.columns[0].type, values[attr.key])
        for attr in model.__mapper__.column_attrs
        if attr.key in values
    }


def _revive(kind: Any, value: Any) -> Any:
    """A value as stored in the audit log (ISO text for times) back to its Python type."""
    if value is None or not isinstance(value, str):
        return value
    if isinstance(kind, DateTime) or isinstance(getattr(kind, "impl", None), DateTime):
        return datetime.fromisoformat(value)
    if isinstance(kind, Date):
        return date.fromisoformat(value)
    return value


async def _describe(ctx: Context, nets: dict[tuple[str, Any], dict]) -> list[Undone]:
    """What the undo will do, in the people's terms: items by ID, other rows counted."""
    lines: list[Undone] = []
    counted: dict[tuple[str, str], Undone] = {}
    for (table, row_id), net in nets.items():
        if net["first"] == "insert" and net["last"] == "delete":
            continue
        kind = ("removed" if net["first"] == "insert"
                else "reinstated" if net["last"] == "delete" else "restored")
        values = {**net["after"], **net["before"]} if kind != "removed" else net["after"]
        label = await _label(ctx, table, row_id, values)
        if label is None:
            key = (table, kind)
            if key in counted:
                counted[key].count += 1
            else:
                counted[key] = Undone(table=table, kind=kind)
                lines.append(counted[key])
            continue
        before = net["before"]
        watcher = None
        if kind == "restored" and table == "key_persons" and before.get("watcher_id"):
            person = await ctx.db.get(models.Person, before["watcher_id"])
            watcher = person.label if person else None
        lines.append(Undone(
            table=table, kind=kind, label=label,
            state=before.get("state") if kind == "restored" else None,
            reopened=kind == "restored" and "ended_at" in before and before["ended_at"] is None,
            watcher=watcher,
            at=_revive(DateTime(), values.get("at")) if table == "checkins" else None,
        ))
    return lines


async def _label(ctx: Context, table: str, row_id: Any, values: dict) -> str | None:
    if table in ITEM_TABLES:
        number = values.get("number")
        if number is None:
            row = await ctx.db.get(MODELS[table], row_id)
            number = row.number if isinstance(row, Numbered) else None
        return f"{ITEM_TABLES[table]}{number}" if number is not None else None
    parents: dict[str, tuple[str, type[models.KeyPerson | models.Shift], str]] = {
        "checkins": ("key_person_id", models.KeyPerson, "K"),
        "signups": ("shift_id", models.Shift, "S"),
    }
    if table in parents:
        column, model, prefix = parents[table]
        parent_id = values.get(column)
        if parent_id is None:
            row = await ctx.db.get(MODELS[table], row_id)
            parent_id = getattr(row, column) if row else None
        parent = await ctx.db.get(model, parent_id) if parent_id is not None else None
        return f"{prefix}{parent.number}" if isinstance(parent, Numbered) else None
    if table == "screenings":
        household = await ctx.db.get(models.Household, values.get("household_id"))
        return household.code if household else None
    return None


async def _messages_sent(ctx: Context, entry: models.AuditEntry) -> int:
    """Messages the undone command sent to others beyond its own reply (direct messages,
    posts in other chats): they have gone out and stay. Matched by the command's moment."""
    chat = await ctx.db.get(models.Chat, entry.chat_id) if entry.chat_id else None
    rows = (
        await ctx.db.scalars(
            select(models.OutboxMessage).where(
                models.OutboxMessage.community_id == entry.community_id,
                models.OutboxMessage.created_at == entry.at,
                models.OutboxMessage.sent_at.is_not(None),
            )
        )
    ).all()
    return sum(
        1 for row in rows
        if row.person_id != entry.person_id and (chat is None or row.chat != chat.external_id)
    )


# --- /forget ----------------------------------------------------------------------------


@command("forget", role=Role.SECRETARY, where=Where.COMMUNITY, confirm=True)
async def forget(ctx: Context, kp: KeyPersonRef) -> None:
    """Remove a key person's personal data now, on request (name, reason, temperatures)."""
    if kp.anonymised_at is not None:
        raise Reject("records/already_forgotten", kp=kp)
    ended = kp.ended_at is None
    if ended:
        # Without a name there is no one to follow up: the observation ends here.
        await ctx.db.execute(
            update(models.KeyPerson).where(models.KeyPerson.id == kp.id)
            .values(ended_at=ctx.now).execution_options(synchronize_session=False)
        )
        ctx.record("key_persons", kp.id, before={"ended_at": None},
                   after={"ended_at": ctx.now.isoformat()})
    checkins = await remove_key_person_data(ctx, kp)
    ctx.record("key_persons", kp.id, before={"anonymised_at": None},
               after={"anonymised_at": ctx.now.isoformat()})
    ctx.ref(f"K{kp.number}")
    ctx.reply("records/forgotten", kp=kp, checkins=checkins, ended=ended)


# --- retention --------------------------------------------------------------------------


async def next_retention_due(jc: JobContext) -> datetime | None:
    """When retention next has work: an ended observation reaching the community's limit,
    or a screening or welfare note not yet cleared reaching the retention (the manual
    clock's `due`, bot/scheduler.py)."""
    moments = []
    for community in (await jc.db.scalars(select(models.Community))).all():
        ended = await jc.db.scalar(
            select(func.min(models.KeyPerson.ended_at)).where(
                models.KeyPerson.community_id == community.id,
                models.KeyPerson.anonymised_at.is_(None),
            )
        )
        if ended is not None:
            moments.append(ended + timedelta(days=community.anonymise_days))
        for kind, (model, carrying) in RETAINED.items():
            mark = await jc.db.get(models.KeyValue, f"retention:{kind}:{community.id}")
            dated = await jc.db.scalar(
                select(func.min(model.at)).where(
                    *carrying(community),
                    (model.at > datetime.fromisoformat(mark.value)) if mark else true(),
                )
            )
            if dated is not None:
                moments.append(dated + timedelta(days=community.retention_days))
    return min(moments, default=None)


@job(every=RETENTION_EVERY, due=next_retention_due)
async def retention(jc: JobContext) -> None:
    """Removes health data (and welfare notes) past each community's limits. What is done is
    marked (the key person's `anonymised_at`; per community, how far screenings and welfare
    notes were cleared), so a rerun or a restart repeats nothing."""
    for community in (await jc.db.scalars(select(models.Community))).all():
        actions = dataclasses.replace(jc, community=community)
        cutoff = jc.now - timedelta(days=community.anonymise_days)
        due = (
            await jc.db.scalars(
                select(models.KeyPerson).where(
                    models.KeyPerson.community_id == community.id,
                    models.KeyPerson.anonymised_at.is_(None),
                    models.KeyPerson.ended_at <= cutoff,
                ).order_by(models.KeyPerson.number)
            )
        ).all()
        for kp in due:
            await remove_key_person_data(actions, kp)
        await clear_old_screenings(actions)
        await clear_old_welfare_notes(actions)


async def remove_key_person_data(actions: Actions, kp: models.KeyPerson) -> int:
    """Removes a key person's name and reason and their check-ins' temperatures and symptoms,
    with the audit log's copies and the stored messages that showed them. Returns the number
    of check-ins cleared."""
    db, community = actions.db, _community(actions)
    await db.execute(
        update(models.KeyPerson).where(models.KeyPerson.id == kp.id)
        .values(name=None, reason=None, anonymised_at=actions.now)
        .execution_options(synchronize_session=False)
    )
    checkin_ids = set((await db.scalars(
        select(models.CheckIn.id).where(models.CheckIn.key_person_id == kp.id)
    )).all())
    await db.execute(
        update(models.CheckIn).where(models.CheckIn.key_person_id == kp.id)
        .values(temperature=None, symptoms="").execution_options(synchronize_session=False)
    )
    ref = f"K{kp.number}"
    entries = (
        await db.scalars(
            select(models.AuditEntry).where(
                or_(
                    (models.AuditEntry.community_id == community.id)
                    & cast(models.AuditEntry.refs, String).like(f'%"{ref}"%'),
                    _touches("key_persons", kp.id),
                )
            )
        )
    ).all()
    moments = set()
    for entry in entries:
        if _scrub_entry(entry, lambda c: _key_person_row(c, kp.id, checkin_ids)):
            moments.add(entry.at)
    # A name of one character would match too much to be told apart.
    name = kp.name if kp.name and len(kp.name) >= 2 else None
    await _scrub_messages(actions, since=kp.started_at, moments=moments, ref=ref, name=name)
    await db.refresh(kp)
    return len(checkin_ids)


def _key_person_row(change: dict, kp_id: int, checkin_ids: set[int]) -> tuple[str, ...]:
    """The private columns of a change, if it wrote this key person or one of their check-ins."""
    if change["table"] == "key_persons" and change["id"] == kp_id:
        return KEY_PERSON_PRIVATE
    if change["table"] == "checkins":
        values = change.get("after") or change.get("before") or {}
        if change["id"] in checkin_ids or values.get("key_person_id") == kp_id:
            return CHECKIN_PRIVATE
    return ()


async def clear_old_screenings(actions: Actions) -> int:
    """Screenings older than the community's retention lose their temperature and note."""
    community = _community(actions)
    return await _clear_past_retention(
        actions, "screenings", models.Screening,
        carrying=_screenings_carrying(community),
        cleared={"note": "", "temperature": None}, private=SCREENING_PRIVATE,
    )


async def clear_old_welfare_notes(actions: Actions) -> int:
    """Welfare check-ins older than the community's retention lose their note; the score
    stays, so the digest's totals still add up.

    The period is `/set retention` (retention_days), not the key persons' one: a welfare
    note is a front-line worker's own words about how they are, personal but not a resident's
    health record, and it is tied to no observation whose end could start a clock. Like a
    screening it is one dated record, kept for the community's retention period and no longer;
    nothing in the bot ever shows it, so nothing is lost with it."""
    community = _community(actions)
    return await _clear_past_retention(
        actions, "welfare", models.WelfareCheck,
        carrying=_welfare_carrying(community),
        cleared={"note": ""}, private=WELFARE_PRIVATE,
    )


def _screenings_carrying(community: models.Community) -> list[Any]:
    return [models.Screening.community_id == community.id,
            or_(models.Screening.note != "", models.Screening.temperature.is_not(None))]


def _welfare_carrying(community: models.Community) -> list[Any]:
    return [models.WelfareCheck.community_id == community.id, models.WelfareCheck.note != ""]


# What retention clears after `retention_days`, by the kind its progress mark names: the
# model and its rows still carrying private values. `next_retention_due` reads it.
RETAINED: dict[str, tuple[type[models.Screening] | type[models.WelfareCheck], Any]] = {
    "screenings": (models.Screening, _screenings_carrying),
    "welfare": (models.WelfareCheck, _welfare_carrying),
}


async def _clear_past_retention(
    actions: Actions,
    kind: str,
    model: type[models.Screening] | type[models.WelfareCheck],
    *,
    carrying: list[Any],
    cleared: dict[str, Any],
    private: tuple[str, ...],
) -> int:
    """Rows of `model` (dated by `at`) still `carrying` private values and older than the
    community's retention get the `cleared` values; the audit log's copies of the `private`
    columns and the command lines, and the direct or HQ messages sent by those commands, go
    too. Progress is kept per community and kind, so each run looks only at what became due
    since; a large backlog (the first run, a shortened retention) is cleared a batch per run,
    so the database is not held for long."""
    db, community = actions.db, _community(actions)
    table = model.__tablename__
    cutoff = actions.now - timedelta(days=community.retention_days)
    mark_key = f"retention:{kind}:{community.id}"
    mark = await db.get(models.KeyValue, mark_key)
    since = datetime.fromisoformat(mark.value) if mark else None
    if since is not None and since >= cutoff:
        return 0
    carrying = list(carrying)
    if since is not None:
        carrying.append(model.at > since)
    moments = (
        await db.scalars(
            select(model.at).where(*carrying, model.at <= cutoff)
            .order_by(model.at).limit(RETENTION_BATCH + 1)
        )
    ).all()
    upto = moments[RETENTION_BATCH - 1] if len(moments) > RETENTION_BATCH else cutoff
    count = (
        await db.execute(
            update(model).where(*carrying, model.at <= upto)
            .values(**cleared).execution_options(synchronize_session=False)
        )
    ).rowcount  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult
    entries = [models.AuditEntry.community_id == community.id, models.AuditEntry.at <= upto,
               cast(models.AuditEntry.changes, String).like(f'%"table": "{table}"%')]
    if since is not None:
        entries.append(models.AuditEntry.at > since)
    for entry in (await db.scalars(select(models.AuditEntry).where(*entries))).all():
        _scrub_entry(entry, lambda c: private if c["table"] == table else ())
    await _scrub_messages(actions, since=since, until=upto,
                          moments={at for at in moments if at <= upto})
    if mark is None:
        db.add(models.KeyValue(key=mark_key, value=upto.isoformat()))
    else:
        mark.value = upto.isoformat()
    return count


def _community(actions: Actions) -> models.Community:
    """The community whose records these are: /forget's, or the one a retention run is for."""
    if actions.community is None:
        raise ValueError("records are kept per community; actions.community is not set")
    return actions.community


def _scrub_entry(entry: models.AuditEntry, private_columns) -> bool:
    """Drops the private values from an audit entry's changes, and the command line as typed
    (it may carry them). Returns whether anything of the entry concerned them."""
    changes = copy.deepcopy(entry.changes)
    touched = False
    for change in changes:
        columns = private_columns(change)
        if not columns:
            continue
        touched = True
        for side in ("before", "after"):
            values = change.get(side)
            if values:
                for column in columns:
                    values.pop(column, None)
    if not touched:
        return False
    entry.changes = changes
    flag_modified(entry, "changes")
    if entry.person_id is not None:
        entry.text = f"/{entry.command}"
    return True


async def _scrub_messages(
    actions: Actions,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    moments: set[datetime],
    ref: str | None = None,
    name: str | None = None,
) -> int:
    """Empties the stored text of messages that carried the data: any message naming the
    person, and the direct or HQ messages (the only ones that show health values) that name
    the item or were sent by a command that wrote it."""
    community, db = _community(actions), actions.db
    hq = await db.get(models.Chat, community.hq_chat_id) if community.hq_chat_id else None
    conditions = [models.OutboxMessage.community_id == community.id,
                  models.OutboxMessage.text != ""]
    if since is not None:
        conditions.append(models.OutboxMessage.created_at >= since)
    if until is not None:
        conditions.append(models.OutboxMessage.created_at <= until)
    candidates = []
    if moments:
        candidates.append(models.OutboxMessage.created_at.in_(sorted(moments)))
    if ref:
        candidates.append(models.OutboxMessage.text.like(f"%{ref}%"))
    if name:
        candidates.append(models.OutboxMessage.text.like(f"%{name}%"))
    if not candidates:
        return 0
    rows = (
        await db.scalars(select(models.OutboxMessage).where(*conditions, or_(*candidates)))
    ).all()
    private_chats = {(hq.transport, hq.external_id)} if hq else set()
    chats = {row.chat for row in rows if row.chat is not None}
    if chats:
        direct = await db.execute(
            select(models.Chat.transport, models.Chat.external_id)
            .where(models.Chat.is_direct.is_(True), models.Chat.external_id.in_(chats))
        )
        private_chats.update((transport, chat) for transport, chat in direct.all())
    mentions = re.compile(rf"(?<![0-9A-Za-z]){ref}(?![0-9])") if ref else None
    cleared = 0
    for row in rows:
        private = row.person_id is not None or (row.transport, row.chat) in private_chats
        if (name and name in row.text) or private and (
            row.created_at in moments or (mentions and mentions.search(row.text))
        ):
            cleared += 1
            await db.execute(
                update(models.OutboxMessage).where(models.OutboxMessage.id == row.id)
                .values(text="", file_data=None).execution_options(synchronize_session=False)
            )
    return cleared

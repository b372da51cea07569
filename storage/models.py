"""The things gridbot keeps (README, "How it is built"), as SQLAlchemy 2 models.

Times are UTC (`UTCDateTime`); each community's time zone applies only when showing or
reading times. Per-community numbers (`E7`, `S5`, `K12`) come from `Counter`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


def table(model: type[Base]) -> Table:
    """A mapped class's table, typed as a Table, for Core statements (`__table__` is typed
    only as a FromClause)."""
    return Base.metadata.tables[model.__tablename__]


# --- people and chats -------------------------------------------------------------------


class Person(Base):
    """Someone on one transport. `external_id` is unknown for a person named before they spoke."""

    __tablename__ = "people"
    __table_args__ = (UniqueConstraint("transport", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    transport: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str | None] = mapped_column(String(255))
    username: Mapped[str | None] = mapped_column(String(255), index=True)
    display_name: Mapped[str] = mapped_column(String(255), default="")
    # The transport's direct chat with this person, once known (Telegram: after /start).
    dm_chat: Mapped[str | None] = mapped_column(String(255))
    # For a person in several communities: the one their direct-chat commands act in (/use).
    current_community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"))
    created_at: Mapped[datetime]

    @property
    def label(self) -> str:
        if self.username:
            return "@" + self.username
        return self.display_name or self.external_id or f"#{self.id}"


class Chat(Base):
    """A group or direct chat on one transport; bound to a community (HQ) or a grid, or neither."""

    __tablename__ = "chats"
    __table_args__ = (UniqueConstraint("transport", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    transport: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(255))
    is_direct: Mapped[bool] = mapped_column(Boolean, default=False)
    title: Mapped[str] = mapped_column(String(255), default="")
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"))
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"))


# --- communities, grids, households, members --------------------------------------------


class Community(Base):
    __tablename__ = "communities"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    tz: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    lang: Mapped[str] = mapped_column(String(8), default="zh")
    digest_time: Mapped[str] = mapped_column(String(5), default="20:00")
    followup_minutes: Mapped[int] = mapped_column(Integer, default=24 * 60)
    claim_minutes: Mapped[int] = mapped_column(Integer, default=3 * 60)
    max_hours: Mapped[int] = mapped_column(Integer, default=10)
    # How long before a shift starts its people are reminded (`/set shiftremind`).
    shift_remind_minutes: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    retention_days: Mapped[int] = mapped_column(Integer, default=90)
    anonymise_days: Mapped[int] = mapped_column(Integer, default=28)
    # No foreign key: chats already point at communities, and a cycle breaks table creation.
    hq_chat_id: Mapped[int | None] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]

    grids: Mapped[list[Grid]] = relationship(
        back_populates="community", order_by="Grid.code", lazy="raise"
    )


class Counter(Base):
    """The last number handed out per community and kind ('E', 'S', 'K')."""

    __tablename__ = "counters"

    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(4), primary_key=True)
    last: Mapped[int] = mapped_column(Integer, default=0)


class Grid(Base):
    __tablename__ = "grids"
    __table_args__ = (UniqueConstraint("community_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255))
    round_no: Mapped[int] = mapped_column(Integer, default=1)
    round_started_at: Mapped[datetime]
    created_at: Mapped[datetime]

    community: Mapped[Community] = relationship(back_populates="grids", lazy="raise")


class Household(Base):
    """A household of the register, coded `building-unit-room`; coverage counts against it."""

    __tablename__ = "households"
    __table_args__ = (UniqueConstraint("community_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    building: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]


class Membership(Base):
    """A person's role in a community (secretary: no grid) or a grid (leader, member).

    Kind, Party membership and work unit are facts for the records, not permissions.
    """

    __tablename__ = "memberships"

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="volunteer")
    party: Mapped[bool] = mapped_column(Boolean, default=False)
    unit: Mapped[str] = mapped_column(String(255), default="")
    joined: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


# --- screening and key persons ----------------------------------------------------------


class Screening(Base):
    __tablename__ = "screenings"
    __table_args__ = (
        # Coverage of a round and the screenings of a period stay cheap as history grows.
        Index("ix_screenings_grid_round", "grid_id", "round_no", "household_id"),
        Index("ix_screenings_grid_at", "grid_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"), index=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    round_no: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    people: Mapped[int | None] = mapped_column(Integer)
    temperature: Mapped[float | None] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text, default="")
    by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    at: Mapped[datetime] = mapped_column(index=True)


class Visitor(Base):
    __tablename__ = "visitors"

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"))
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"))
    origin: Mapped[str] = mapped_column(String(255), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    at: Mapped[datetime] = mapped_column(index=True)


class Vehicle(Base):
    __tablename__ = "vehicles"

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"))
    plate: Mapped[str] = mapped_column(String(32))
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    at: Mapped[datetime] = mapped_column(index=True)


class KeyPerson(Base):
    """`K<n>`: someone under observation, followed one-to-one by a watcher. `name` is private."""

    __tablename__ = "key_persons"
    __table_args__ = (
        UniqueConstraint("community_id", "number"),
        # The one index on grid_id: a grid's key persons under observation (or observed since
        # a time) are found without reading the grid's past ones. A single-column index on
        # grid_id beside it made PostgreSQL read them all and filter (see README, Benchmarks).
        Index("ix_key_persons_grid_open", "grid_id", "ended_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    number: Mapped[int] = mapped_column(Integer)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"))
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    name: Mapped[str | None] = mapped_column(String(255))
    # Name and reason are removed (NULL) once the record is anonymised (commands/records.py).
    reason: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime]
    until: Mapped[date | None] = mapped_column(Date)
    ended_at: Mapped[datetime | None]
    watcher_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    last_reminded_at: Mapped[datetime | None]
    anonymised_at: Mapped[datetime | None]

    # Loaded with the key person by `KeyPersonRef` (bot/args.py), never lazily.
    household: Mapped[Household] = relationship(lazy="raise")


class CheckIn(Base):
    __tablename__ = "checkins"
    __table_args__ = (Index("ix_checkins_key_person_at", "key_person_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key_person_id: Mapped[int] = mapped_column(ForeignKey("key_persons.id"), index=True)
    temperature: Mapped[float | None] = mapped_column(Float)  # NULL once anonymised
    symptoms: Mapped[str] = mapped_column(Text, default="")
    alert: Mapped[bool] = mapped_column(Boolean, default=False)
    by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    at: Mapped[datetime] = mapped_column(index=True)


# --- errands ----------------------------------------------------------------------------


class Errand(Base):
    """`E<n>`: open → claimed → done (or cancelled)."""

    __tablename__ = "errands"
    __table_args__ = (
        UniqueConstraint("community_id", "number"),
        Index("ix_errands_grid_state", "grid_id", "state", "done_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    number: Mapped[int] = mapped_column(Integer)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"))
    due_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16), default="open", index=True)
    posted_by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    posted_at: Mapped[datetime]
    claimed_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    claimed_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    done_note: Mapped[str] = mapped_column(Text, default="")
    closed_at: Mapped[datetime | None]


# --- duty posts and shifts --------------------------------------------------------------


class DutyPost(Base):
    __tablename__ = "duty_posts"
    __table_args__ = (UniqueConstraint("grid_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"))
    name: Mapped[str] = mapped_column(String(255))
    place: Mapped[str] = mapped_column(String(255), default="", server_default="")


class Shift(Base):
    """`S<n>`: one post, one date, start–end, a number of slots."""

    __tablename__ = "shifts"
    __table_args__ = (UniqueConstraint("community_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    number: Mapped[int] = mapped_column(Integer)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"), index=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("duty_posts.id"))
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime]
    slots: Mapped[int] = mapped_column(Integer, default=1)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    reminded_at: Mapped[datetime | None]
    # When the leaders were told at the start that slots were still empty (or that all
    # were filled: the mark only says the start was handled).
    started_alerted_at: Mapped[datetime | None]
    credited_at: Mapped[datetime | None]


class SignUp(Base):
    """A person on a shift: `slot` (holds a slot), `waiting` (in line), `noshow`.

    The waiting list is in `id` order (rows are added under the shift's lock)."""

    __tablename__ = "signups"
    __table_args__ = (UniqueConstraint("shift_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shift_id: Mapped[int] = mapped_column(ForeignKey("shifts.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    offered_to_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    at: Mapped[datetime]
    noshow_at: Mapped[datetime | None]


# --- supplies ---------------------------------------------------------------------------


class SupplyItem(Base):
    """One grid's item: `name` is the catalogue key (`masks`) or the name as first typed;
    `unit` a unit key of commands/supplies.py; `low_since` is set when the one low alert
    went out and cleared when the level is back at or above the minimum (re-arming it)."""

    __tablename__ = "supply_items"
    __table_args__ = (UniqueConstraint("grid_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"))
    name: Mapped[str] = mapped_column(String(255))
    category: Mapped[str] = mapped_column(String(16), default="other")
    unit: Mapped[str] = mapped_column(String(32), default="")
    minimum: Mapped[float | None] = mapped_column(Float)
    aliases: Mapped[list[Any]] = mapped_column(default=list)
    low_since: Mapped[datetime | None]


class SupplyReport(Base):
    """A level reported for an item, in the item's unit: the history, not only the last value."""

    __tablename__ = "supply_reports"
    __table_args__ = (Index("ix_supply_reports_item_at", "item_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("supply_items.id"), index=True)
    level: Mapped[float] = mapped_column(Float)
    by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    at: Mapped[datetime]


class SupplyNeed(Base):
    """`N<n>`: a priority request for the front line, open (`pending`) until marked `met` or
    `cancelled` by the person who asked (either sets `closed_at`)."""

    __tablename__ = "supply_needs"
    __table_args__ = (
        UniqueConstraint("community_id", "number"),
        Index("ix_supply_needs_grid_open", "grid_id", "closed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    number: Mapped[int] = mapped_column(Integer)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("supply_items.id"))
    item: Mapped[str] = mapped_column(String(255))
    quantity: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(32), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    met_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    met_note: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")


# --- publicity and care -----------------------------------------------------------------


class Announcement(Base):
    __tablename__ = "announcements"

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    text: Mapped[str] = mapped_column(Text)
    by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    at: Mapped[datetime]


class Praise(Base):
    """A commendation of a grid member, with its reason; posted in the member's grid chat."""

    __tablename__ = "praises"
    __table_args__ = (Index("ix_praises_grid_at", "grid_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    reason: Mapped[str] = mapped_column(Text)
    by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    at: Mapped[datetime]


class WelfareCheck(Base):
    """A front-line worker's 1–5 score; reported onwards only as aggregates per grid. Only
    when the worker chooses to (`shared_at`) does their leader see the score."""

    __tablename__ = "welfare_checks"
    __table_args__ = (Index("ix_welfare_checks_community_at", "community_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    score: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]
    shared_at: Mapped[datetime | None]


class WelfareAsk(Base):
    """That a worker was asked for a welfare score after a shift: each is asked once."""

    __tablename__ = "welfare_asks"
    __table_args__ = (UniqueConstraint("shift_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shift_id: Mapped[int] = mapped_column(ForeignKey("shifts.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    at: Mapped[datetime]


# --- the machinery: audit, digests, delivery, dedupe -------------------------------------


class AuditEntry(Base):
    """One accepted command that wrote something: who, what, when, through which chat.

    `changes` lists each row written ({table, id, op, before, after}) so that /history
    and /undo need no per-command code.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id"))
    command: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text, default="")
    refs: Mapped[list[Any]] = mapped_column(default=list)
    changes: Mapped[list[Any]] = mapped_column(default=list)
    undone_at: Mapped[datetime | None]


class DigestSent(Base):
    """The guard of exactly-once digests: one row per community and local date."""

    __tablename__ = "digests_sent"

    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sent_at: Mapped[datetime]
    late: Mapped[bool] = mapped_column(Boolean, default=False)


class ProcessedMessage(Base):
    """Incoming messages already handled ('telegram:<update_id>', 'matrix:<event_id>').

    Written in the same transaction as the command's effect, so a redelivered message is
    skipped and a crash before commit means it is handled again.
    """

    __tablename__ = "processed_messages"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    at: Mapped[datetime]


class OutboxMessage(Base):
    """A message to send, stored with the command that caused it and delivered after commit.

    Undelivered rows are sent at start-up, so a crash between commit and send loses nothing.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    transport: Mapped[str] = mapped_column(String(16))
    chat: Mapped[str | None] = mapped_column(String(255))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    origin_chat: Mapped[str | None] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text, default="")
    file_name: Mapped[str | None] = mapped_column(String(255))
    file_data: Mapped[bytes | None] = mapped_column(LargeBinary)
    buttons: Mapped[list[Any]] = mapped_column(default=list)
    pin: Mapped[bool] = mapped_column(Boolean, default=False)
    reply_to: Mapped[str | None] = mapped_column(String(255))
    ref: Mapped[str | None] = mapped_column(String(32))
    # Who asked and with which command (`@wang /errand`), for a reply to a command: names
    # it when replies waiting for a rate-limited chat go out merged into one message.
    answers: Mapped[str | None] = mapped_column(String(160))
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id"))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(index=True)
    error: Mapped[str | None] = mapped_column(Text)
    # The bot instance delivering it, until when: another instance on the same database
    # takes a pending row over only once that lease has run out.
    lease_owner: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None]


class PostedMessage(Base):
    """A message the bot sent with buttons, so that a reaction to it (Matrix) runs the
    button's command."""

    __tablename__ = "posted_messages"
    __table_args__ = (UniqueConstraint("transport", "chat", "message"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    transport: Mapped[str] = mapped_column(String(16))
    chat: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(String(255))
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    ref: Mapped[str | None] = mapped_column(String(32))
    buttons: Mapped[list[Any]] = mapped_column(default=list)


class Lease(Base):
    """Who runs the scheduled jobs when several bot instances share the database, until when."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(32))
    until: Mapped[datetime]


class KeyValue(Base):
    """Small pieces of state: a transport's (e.g. the Matrix sync token, saved after
    handling), or when a person was last reminded of something (`hint:…`)."""

    __tablename__ = "key_values"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

"""What a command or job sees: the database session, the clock, who and where, and ways to
answer. Messages are stored in the outbox inside the same transaction and delivered after
it commits, so an accepted command never loses its reply.

Each message is rendered for its reader (bot/privacy.py): a group chat, the HQ chat, or the
person of a direct chat. The readers of direct messages are looked up together when the
command or job has finished (`seal`), in one query, so that `reply`, `post` and `tell` stay
plain calls.

The rows are written when they are sealed too, all together with one Core INSERT (inside the
command's transaction, so a refused command's rows are never written): an announcement to
1,000 grid chats is not 1,000 objects for the ORM's session to track and flush. Until then a
queued row is a transient `OutboxMessage` (never added to the session) without an id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import Confirm, Reject
from bot.people import Standing
from bot.privacy import PUBLIC, Viewer
from bot.roles import Role
from bot.transports.base import Incoming
from storage import models

if TYPE_CHECKING:
    from bot.app import App
    from bot.registry import Command

# How long the instance that queued a message has to deliver it before another may.
DELIVERY_LEASE = timedelta(minutes=2)

_OUTBOX = models.table(models.OutboxMessage)
_COLUMNS = tuple(c.key for c in _OUTBOX.columns if c.key != "id")
_INSERT = insert(_OUTBOX)
# The new ids in the order of the rows given: PostgreSQL sends the rows in batches and sorts
# what they return (SQLAlchemy's "insertmanyvalues", sort_by_parameter_order).
_INSERT_RETURNING = _INSERT.returning(_OUTBOX.c.id, sort_by_parameter_order=True)
_LAST_ROWID = select(func.last_insert_rowid())
_new_row = inspect(models.OutboxMessage).class_manager.new_instance


@dataclass
class _Unrendered:
    """A queued message whose text is rendered once its reader is known."""

    row: models.OutboxMessage
    template: str
    values: dict[str, Any]
    # Who queued it: its community's language and time zone (a job speaks for several).
    actions: Actions
    chat: models.Chat | None = None
    person: models.Person | None = None


@dataclass(kw_only=True)
class Actions:
    """The part shared by commands and scheduled jobs."""

    app: App
    db: AsyncSession
    now: datetime
    community: models.Community | None = None
    queued: list[models.OutboxMessage] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _unrendered: list[_Unrendered] = field(default_factory=list)

    @property
    def lang(self) -> str:
        return self.community.lang if self.community else self.app.config.lang

    @property
    def tz(self) -> str:
        return self.community.tz if self.community else self.app.config.tz

    @property
    def today(self) -> date:
        return self.now.astimezone(ZoneInfo(self.tz)).date()

    def local(self, when: datetime) -> datetime:
        return when.astimezone(ZoneInfo(self.tz))

    def render(self, template: str, /, *, viewer: Viewer | None = None, **values: Any) -> str:
        """Renders a template for `viewer` (None: anyone; nothing private shows)."""
        return self.app.renderer.render(
            self.lang, template, viewer=viewer, tz=self.tz, now=self.now, **values
        )

    def emit(self, event: str, **values: Any) -> None:
        """Announces a change to the hooks declared with `@on(event)`, once this transaction
        has committed (so they can read the change, and never see one that was undone)."""
        self.events.append((event, values))

    def chat_viewer(self, chat: models.Chat) -> Viewer | None:
        """The reader of a chat when it is known without a query: a group chat (the HQ chat
        of this community sees its details; any other group nothing). None for a direct chat,
        whose person is looked up when the messages are sealed."""
        if chat.is_direct:
            return None
        if self.community is not None and chat.id == self.community.hq_chat_id:
            return Viewer(hq_of=self.community.id)
        return PUBLIC

    def post(
        self,
        chat: models.Chat,
        template: str,
        /,
        *,
        buttons: list[dict[str, str]] | None = None,
        ref: str | None = None,
        pin: bool = False,
        file: tuple[str, bytes] | None = None,
        reply_to: str | None = None,
        **values: Any,
    ) -> models.OutboxMessage:
        """Queues a message to a chat, rendered for that chat's reader."""
        row = self._queue(
            transport=chat.transport, chat=chat.external_id, buttons=buttons or [],
            ref=ref, pin=pin, file=file, reply_to=reply_to,
        )
        self._unrendered.append(_Unrendered(row, template, values, self, chat=chat))
        return row

    def tell(
        self,
        person: models.Person,
        template: str,
        /,
        *,
        origin: models.Chat | None = None,
        file: tuple[str, bytes] | None = None,
        buttons: list[dict[str, str]] | None = None,
        **values: Any,
    ) -> models.OutboxMessage:
        """Queues a direct message to a person, rendered for them. If it cannot be delivered
        (they never opened a chat with the bot), `origin` is told so, without its content."""
        row = self._queue(
            transport=person.transport, person_id=person.id, file=file, buttons=buttons or [],
            origin_chat=origin.external_id if origin and not origin.is_direct else None,
        )
        self._unrendered.append(_Unrendered(row, template, values, self, person=person))
        return row

    def _queue(
        self, *, file: tuple[str, bytes] | None = None, **fields: Any
    ) -> models.OutboxMessage:
        # A row no session will track: built as the ORM builds a row it loads (its values put
        # in place, not set one by one through the attribute events, which for a fan-out to
        # 1,000 chats cost more than writing the rows). Every column has its value here (see
        # _UNSET): the row is written from them, and the Outbox reads them.
        row = _new_row()
        vars(row).update(
            _UNSET,
            created_at=self.now,
            lease_owner=self.app.instance_id,
            lease_until=self.now + DELIVERY_LEASE,
            community_id=self.community.id if self.community else None,
            file_name=file[0] if file else None,
            file_data=file[1] if file else None,
            text="",
            **fields,
        )
        self.queued.append(row)
        return row

    def discard_unrendered(self) -> None:
        """Forgets messages taken back from `queued` (a command that was rolled back)."""
        kept = {id(row) for row in self.queued}
        self._unrendered = [u for u in self._unrendered if id(u.row) in kept]

    def known_viewers(self) -> dict[int, Viewer]:
        """Readers known without a query (a command's own speaker)."""
        return {}

    async def seal(self) -> None:
        """Renders every queued message for its reader. The people who read direct messages
        are looked up in one query: their roles now, so a role taken away counts at once."""
        if not self._unrendered:
            return
        known = self.known_viewers()
        wanted: set[int] = set()
        direct_chats: set[tuple[str, str]] = set()
        for item in self._unrendered:
            if item.person is not None and item.person.id not in known:
                wanted.add(item.person.id)
            elif item.chat is not None and item.chat.is_direct:
                direct_chats.add((item.chat.transport, item.chat.external_id))
        by_chat: dict[tuple[str, str], int] = {}
        if direct_chats:
            rows = await self.db.execute(
                select(models.Person.id, models.Person.transport, models.Person.dm_chat).where(
                    models.Person.dm_chat.in_([c for _, c in direct_chats])
                )
            )
            for person_id, transport, dm_chat in rows.all():
                assert dm_chat is not None  # selected by it
                by_chat[(transport, dm_chat)] = person_id
                if person_id not in known:
                    wanted.add(person_id)
        viewers = dict(known)
        if wanted:
            viewers.update(await _viewers(self.app, self.db, wanted))
        pending, self._unrendered = self._unrendered, []
        rendered: dict[tuple, str] = {}
        for item in pending:
            if item.person is not None:
                viewer: Viewer | None = viewers.get(item.person.id)
            else:
                assert item.chat is not None
                viewer = self.chat_viewer(item.chat)
                if item.chat.is_direct:
                    key = (item.chat.transport, item.chat.external_id)
                    viewer = viewers.get(by_chat.get(key, -1))
            # The same message to many chats of one kind (an announcement to every grid
            # chat) is rendered once per kind of reader: same template, reader and values.
            same = (id(item.actions), item.template, viewer,
                    tuple((name, id(value)) for name, value in item.values.items()))
            text = rendered.get(same)
            if text is None:
                text = item.actions.render(item.template, viewer=viewer, **item.values)
                rendered[same] = text
            item.row.text = text
        await _write(self.db, [item.row for item in pending])


# What a queued row holds unless `post` or `tell` says otherwise (both give `buttons`).
_UNSET: dict[str, Any] = {
    "chat": None, "person_id": None, "origin_chat": None, "pin": False,
    "reply_to": None, "ref": None, "answers": None, "sent_at": None, "error": None,
}


async def _write(db: AsyncSession, rows: list[models.OutboxMessage]) -> None:
    """Writes queued rows together, in the order given, and gives each its id."""
    if not rows:
        return
    params = [{name: vars(row)[name] for name in _COLUMNS} for row in rows]
    conn = await db.connection()
    ids: Sequence[int]
    if len(rows) > 1 and conn.dialect.name == "sqlite":
        # SQLite cannot say which RETURNING row is whose in a batch (SQLAlchemy would send one
        # INSERT per row to know). Instead: one executemany, rows inserted one after another
        # under the write lock, each given the largest rowid so far + 1 (sqlite.org/autoinc),
        # so their ids run up to the last one inserted.
        await conn.execute(_INSERT, params)
        last = await conn.scalar(_LAST_ROWID)
        assert last is not None  # rows were just inserted on this connection
        ids = range(last - len(rows) + 1, last + 1)
    else:
        ids = (await conn.execute(_INSERT_RETURNING, params)).scalars().all()
    for row, row_id in zip(rows, ids, strict=True):
        row.id = row_id


async def _viewers(app: App, db: AsyncSession, person_ids: set[int]) -> dict[int, Viewer]:
    people = (await db.scalars(select(models.Person).where(models.Person.id.in_(person_ids)))).all()
    memberships = (
        await db.scalars(
            select(models.Membership)
            .where(models.Membership.person_id.in_(person_ids))
            .order_by(models.Membership.id)
        )
    ).all()
    return {
        person.id: Standing(
            person.id, app.people.is_admin(person),
            tuple(m for m in memberships if m.person_id == person.id),
        ).viewer()
        for person in people
    }


@dataclass(kw_only=True)
class Context(Actions):
    """A command being handled: who said it, where, with which standing."""

    message: Incoming
    person: models.Person
    chat: models.Chat
    standing: Standing
    grid: models.Grid | None = None
    role: Role = Role.RESIDENT
    command: Command | None = None
    # In a direct chat of a person in several communities: those communities (/use).
    communities: list[models.Community] = field(default_factory=list)
    # Typed again with `confirm` (or its button pressed): a question asked before is answered.
    confirmed: bool = False
    # Private details were typed in a group chat (bot/dispatch.py removes the message).
    private_input: bool = False
    # For the log line of the command: ok, error, or refused:<template>.
    outcome: str = "ok"
    refs: list[str] = field(default_factory=list)
    extra_changes: list[dict[str, Any]] = field(default_factory=list)

    def post(self, chat: models.Chat, template: str, /, **values: Any) -> models.OutboxMessage:
        row = super().post(chat, template, **values)
        if chat.id == self.chat.id:
            # Names the command it answers, should it go out merged with others (bot/outbox.py).
            word = self.message.text.strip().split(maxsplit=1)[0].split("@", 1)[0]
            row.answers = f"{self.person.label} /{word.lstrip('/／')}"[:160]
        return row

    def reply(self, template: str, /, **values: Any) -> models.OutboxMessage:
        """Answers in this chat; in a group, as a reply to the command, so that in a busy
        chat it is clear which command an answer belongs to."""
        reply_to = None if self.chat.is_direct else self.message.message_id
        return self.post(self.chat, template, reply_to=reply_to, **values)

    def known_viewers(self) -> dict[int, Viewer]:
        return {self.person.id: self.standing.viewer()}

    def chat_viewer(self, chat: models.Chat) -> Viewer | None:
        if chat.is_direct and chat.id == self.chat.id:
            return self.standing.viewer()
        return super().chat_viewer(chat)

    def fail(self, template: str, /, **values: Any) -> Reject:
        """`raise ctx.fail(...)`: a clear refusal; nothing the command wrote is kept."""
        return Reject(template, **values)

    def confirm(self, template: str, /, **values: Any) -> None:
        """Asks before going on, unless the person already confirmed: the question names what
        will happen; the button (or the command typed again with `confirm`) runs it. Only for
        commands declared with `confirmable=True`. `button=` names the button (default ✅)."""
        if not self.confirmed:
            raise Confirm(template, **values)

    def require_community(self) -> models.Community:
        if self.community is None:
            raise Reject("core/no_community")
        return self.community

    def require_grid(self) -> models.Grid:
        if self.grid is None:
            raise Reject("core/no_grid")
        return self.grid

    def role_in(self, grid: models.Grid | None) -> Role:
        """The caller's role in another grid of this community (for value-dependent rules)."""
        return self.standing.role(self.community.id if self.community else None,
                                  grid.id if grid else None)

    def ref(self, *refs: str) -> None:
        """Names the items this command touched (`E7`) for /history."""
        self.refs.extend(refs)

    def record(self, table: str, row_id: int, before: dict, after: dict) -> None:
        """Adds to the audit entry a write made by a bulk statement (the ORM did not see it)."""
        self.extra_changes.append(
            {"table": table, "id": row_id, "op": "update", "before": before, "after": after}
        )


@dataclass(kw_only=True)
class JobContext(Actions):
    """A scheduled job's view: no sender, no chat of origin."""

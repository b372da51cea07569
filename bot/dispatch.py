"""Every incoming message goes through one pipeline:
dedupe → who and where → find the command → authorise → parse → run → audit → reply.

The command's writes, its audit entry, its replies (in the outbox) and the record that the
message was handled commit together; replies are delivered after the commit.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from difflib import get_close_matches
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from bot.context import Context
from bot.errors import ArgError, Refused, Reject
from bot.normalise import normalise
from bot.registry import REGISTRY, Command
from bot.roles import Role, Where
from bot.transports.base import Incoming, Outgoing
from storage import models

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

MAX_LENGTH = 4000
# A command that meets the database locked or restarting is run again this many times, after
# growing pauses (about 7 s in all), before the person is told to try again.
DB_ATTEMPTS = 4
FIRST_PAUSE = 1.0
CONFIRM_WORDS = {"confirm", "确认"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
_COMMAND = re.compile(r"[/／](\S+?)(?:@(\S+))?(?:\s+(.*))?", re.DOTALL)


# Driver errors that mean "the connection is gone or the server is not accepting yet"
# (asyncpg's, by class name so that SQLite-only installs need no asyncpg).
_CONNECTION_ERRORS = {
    "PostgresConnectionError", "ConnectionDoesNotExistError", "OperatorInterventionError",
    "CannotConnectNowError", "ConnectionFailureError",
}


def transient(error: BaseException) -> bool:
    """Whether an error means the database is unavailable for now (SQLite locked beyond its
    busy timeout, PostgreSQL restarting or unreachable), so the command may simply run again
    (its transaction was rolled back)."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, DBAPIError) and (
            error.connection_invalidated or isinstance(error, OperationalError | InterfaceError)
        ):
            return True
        if isinstance(error, ConnectionError | TimeoutError) or type(error) is OSError:
            return True
        if any(cls.__name__ in _CONNECTION_ERRORS for cls in type(error).__mro__):
            return True
        error = getattr(error, "orig", None) or error.__cause__ or error.__context__
        seen += 1
    return False


def split_command(text: str) -> tuple[str, str | None, str] | None:
    """`/claim@gridbot E7` → ('claim', 'gridbot', 'E7'); None if it is not a command."""
    match = _COMMAND.fullmatch(text.strip())
    if not match:
        return None
    return match[1], match[2], (match[3] or "").strip()


class Dispatcher:
    def __init__(self, app: App) -> None:
        self.app = app

    async def handle(self, msg: Incoming, *, wait_for_delivery: bool = True) -> None:
        msg = replace(msg, text=normalise(msg.text))  # phone-typed forms, once (bot/normalise.py)
        parsed = split_command(msg.text)
        if parsed is None:
            return  # ordinary conversation in the chat
        name, addressed_to, args = parsed
        if addressed_to and self.app.bot_usernames and addressed_to.lower() not in self.app.bot_usernames:
            return  # `/cmd@otherbot`
        ctx = await self._run_retrying(msg, name, args)
        if ctx is None:
            return
        log.info("command transport=%s chat=%s person=%s command=/%s outcome=%s",
                 msg.transport, msg.chat, msg.sender, name, getattr(ctx, "outcome", "ok"))
        for event, values in ctx.events:
            await self.app.emit(event, **values)
        if wait_for_delivery:
            await self.app.outbox.deliver(ctx.queued)
        else:
            self.app.outbox.deliver_soon(ctx.queued)

    async def _run_retrying(self, msg: Incoming, name: str, args: str) -> Context | None:
        """Runs the command; again after a pause while the database is unavailable (locked,
        restarting), which is safe: the transaction was rolled back, and a redelivered message
        is recognised by its dedupe record. If it stays unavailable, the person is told to
        send the command again; any other error gets an apology."""
        pause = FIRST_PAUSE
        for attempt in range(1, DB_ATTEMPTS + 1):
            try:
                return await self._run(msg, name, args)
            except Exception as error:
                if not transient(error):
                    log.exception("command failed: transport=%s chat=%s sender=%s text=%r",
                                  msg.transport, msg.chat, msg.sender, msg.text[:200])
                    ctx = await self._answer_failure(msg)
                    if ctx is not None:
                        ctx.outcome = "error"
                    return ctx
                if attempt == DB_ATTEMPTS:
                    log.error("command not handled: database unavailable (%s) transport=%s "
                              "chat=%s person=%s command=/%s", error, msg.transport, msg.chat,
                              msg.sender, name)
                    await self._tell_unavailable(msg)
                    return None
                log.warning("command retried: database unavailable (%s) transport=%s chat=%s "
                            "person=%s command=/%s attempt=%d", type(error).__name__,
                            msg.transport, msg.chat, msg.sender, name, attempt)
                await asyncio.sleep(pause)
                pause *= 2
        return None

    async def _run(self, msg: Incoming, name: str, args: str) -> Context | None:
        async with self.app.db.transaction() as db:
            if not await self._first_delivery(db, msg):
                return None  # a redelivered message: handled already
            ctx = await self.context(db, msg)
            kept = len(ctx.queued)
            try:
                async with db.begin_nested():
                    await self._execute(ctx, name, args)
            except (Reject, Refused, ArgError) as problem:
                del ctx.queued[kept:]  # replies queued by the rolled-back command
                ctx.events.clear()
                ctx.outcome = f"refused:{getattr(problem, 'template', type(problem).__name__)}"
                self._explain(ctx, name, args, problem)
            return ctx

    async def _first_delivery(self, db, msg: Incoming) -> bool:
        """Records a redeliverable message as handled, in the caller's transaction; False if
        it was handled before."""
        if not msg.dedupe_key:
            return True
        if await db.get(models.ProcessedMessage, msg.dedupe_key) is not None:
            return False
        db.add(models.ProcessedMessage(key=msg.dedupe_key, at=self.app.clock.now()))
        return True

    async def context(self, db, msg: Incoming) -> Context:
        """Who is speaking, in which chat, community and grid, with which role."""
        now = self.app.clock.now()
        person = await self.app.people.from_message(db, msg, now)
        # The chat with its community and grid in one query: this runs for every message.
        found = (
            await db.execute(
                select(models.Chat, models.Community, models.Grid)
                .outerjoin(models.Community, models.Community.id == models.Chat.community_id)
                .outerjoin(models.Grid, models.Grid.id == models.Chat.grid_id)
                .where(models.Chat.transport == msg.transport, models.Chat.external_id == msg.chat)
            )
        ).first()
        chat, community, grid = found if found is not None else (None, None, None)
        if chat is None:
            chat = models.Chat(
                transport=msg.transport, external_id=msg.chat, is_direct=msg.is_direct,
                title=msg.chat_title,
            )
            db.add(chat)
            await db.flush()
        elif chat.is_direct != msg.is_direct:
            chat.is_direct = msg.is_direct  # e.g. a Matrix direct room someone else joined
        if community is None:
            # In a direct chat (or a group not yet linked), act in the community the person
            # last joined; in a direct chat, in that grid too.
            membership = await db.scalar(
                select(models.Membership)
                .where(models.Membership.person_id == person.id)
                .order_by(models.Membership.id.desc())
            )
            if membership is not None:
                community = await db.get(models.Community, membership.community_id)
                if chat.is_direct and membership.grid_id:
                    grid = await db.get(models.Grid, membership.grid_id)
        role = await self.app.people.role(db, person, community, grid)
        return Context(
            app=self.app, db=db, now=now, community=community, message=msg, person=person,
            chat=chat, grid=grid, role=role,
        )

    async def _execute(self, ctx: Context, name: str, args: str) -> None:
        if len(ctx.message.text) > MAX_LENGTH:
            raise Reject("core/too_long", limit=MAX_LENGTH)
        if _CONTROL.search(ctx.message.text):
            raise Reject("core/control_characters")
        found = REGISTRY.find(name, args)
        if found is None and REGISTRY.group_usage(name):
            raise ArgError("subcommand", word=args.split()[0] if args.split() else "")
        if found is None:
            raise Reject("core/unknown", name=name, suggestions=self._suggest(name))
        cmd, argtext = found
        ctx.command = cmd
        self._check_where(ctx, cmd)
        if cmd.role_grid is None:
            self._check_role(ctx, cmd.role)
        if cmd.confirm:
            words = argtext.split()
            if not words or words[-1].lower() not in CONFIRM_WORDS:
                self._ask_to_confirm(ctx, cmd, argtext)
                return
            argtext = argtext.strip()[: -len(words[-1])]
        values = await cmd.signature.parse(ctx, argtext)
        if cmd.role_grid is not None:
            grid = values[cmd.role_grid]
            role = await self.app.people.role(ctx.db, ctx.person, ctx.community, grid)
            if role < cmd.role:
                raise Refused(cmd.role)
        ctx.db.info["audit"] = changes = []
        try:
            positional = [values.pop(p.name) for p in cmd.signature.params if p.variadic]
            await cmd.function(ctx, *(positional[0] if positional else ()), **values)
            await ctx.db.flush()
        finally:
            ctx.db.info.pop("audit", None)
        changes += ctx.extra_changes
        if changes:
            ctx.db.add(models.AuditEntry(
                at=ctx.now, community_id=ctx.community.id if ctx.community else None,
                person_id=ctx.person.id, chat_id=ctx.chat.id, command=cmd.name,
                text=ctx.message.text[:1000], refs=ctx.refs, changes=changes,
            ))

    def _ask_to_confirm(self, ctx: Context, cmd: Command, argtext: str) -> None:
        """Asks before a command that cannot easily be taken back; pressing the button (or
        typing the command again with `confirm`) runs it."""
        again = f"/{cmd.name} {argtext.strip()} confirm".replace("  ", " ")
        label = ctx.render("core/confirm_button", private=False)
        ctx.reply("core/confirm", command=again,
                  buttons=[{"label": label, "command": again, "emoji": "✅"}])

    def allows(self, ctx: Context, cmd: Command) -> bool:
        """Whether the caller may use `cmd` in this chat, as the filter would decide."""
        if not self._where_ok(ctx, cmd):
            return False
        # A command that names its grid is checked against that grid when run.
        return ctx.role >= cmd.role or cmd.role_grid is not None

    def _check_where(self, ctx: Context, cmd: Command) -> None:
        if not self._where_ok(ctx, cmd):
            raise Refused(where=cmd.where)

    def _where_ok(self, ctx: Context, cmd: Command) -> bool:
        chat, community = ctx.chat, ctx.community
        return {
            Where.ANY: True,
            Where.GROUP: not chat.is_direct,
            Where.DIRECT: chat.is_direct,
            Where.GRID: chat.grid_id is not None,
            Where.HQ: community is not None and chat.id == community.hq_chat_id,
            Where.COMMUNITY: community is not None,
        }[cmd.where]

    def _check_role(self, ctx: Context, needed: Role) -> None:
        if ctx.role < needed:
            raise Refused(needed)

    def _explain(self, ctx: Context, name: str, args: str, problem: Exception) -> None:
        """Turns a refusal or a bad argument into a clear reply."""
        cmd = ctx.command
        if isinstance(problem, Reject):
            ctx.reply(problem.template, **problem.values, usage=cmd.usage if cmd else "")
        elif isinstance(problem, Refused):
            ctx.reply(
                "core/refused",
                role=problem.role.key if problem.role is not None else None,
                where=str(problem.where) if problem.where else None,
                command=cmd.name if cmd else name,
                no_admins=not self.app.config.admins and ctx.message.transport != "console",
            )
        else:
            if cmd is None or (cmd.sub and not args.strip()):
                usages = REGISTRY.group_usage(cmd.group if cmd else name)
            else:
                usages = [cmd.usage]
            ctx.reply(
                "core/usage",
                problem=ctx.render("args/" + problem.template, private=False, **problem.values),
                usages=usages,
            )

    def _suggest(self, name: str) -> list[str]:
        names = list(REGISTRY.groups) + list(REGISTRY.aliases)
        close = get_close_matches(name.lower(), names, n=3, cutoff=0.6)
        return [REGISTRY.aliases.get(n, n) for n in close]

    async def _tell_unavailable(self, msg: Incoming) -> None:
        """The database cannot be reached: says so straight through the transport (nothing
        can be queued), so that the person knows to send the command again."""
        transport = self.app.transports.get(msg.transport)
        if transport is None:
            return
        text = self.app.renderer.render(self.app.config.lang, "core/try_again", private=False)
        reply_to = None if msg.is_direct else msg.message_id
        try:
            await transport.send(msg.chat, Outgoing(text=text, reply_to=reply_to))
        except Exception:
            log.exception("could not tell chat=%s that the database is unavailable", msg.chat)

    async def _answer_failure(self, msg: Incoming) -> Context | None:
        """After an unexpected error: apologise once, and never handle the message again."""
        try:
            async with self.app.db.transaction() as db:
                if not await self._first_delivery(db, msg):
                    return None
                ctx = await self.context(db, msg)
                ctx.reply("core/internal_error")
                return ctx
        except Exception:
            log.exception("could not even apologise for %r", msg.text[:200])
            return None

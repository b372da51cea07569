"""Every incoming message goes through one pipeline:
dedupe → who and where → find the command → authorise → parse → run → audit → reply.

The command's writes, its audit entry, its replies (in the outbox) and the record that the
message was handled commit together; replies are delivered after the commit. Errors of the
one error tree (bot/errors.py) become replies here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from datetime import date
from difflib import get_close_matches
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.access import Place, Seat, allowed, grid_refusal, refusal
from bot.context import Actions, Context
from bot.context_cache import Found
from bot.errors import ArgError, Confirm, GridbotError, Refused, Reject
from bot.normalise import normalise
from bot.registry import REGISTRY, Command
from bot.roles import Role, Where
from bot.transports.base import Incoming, Outgoing
from storage import models
from storage.db import transient
from storage.queries import load

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
# Command names safe to repeat in a group when unknown (anything else may be private text).
_PLAIN_NAME = re.compile(r"[a-z0-9_]{1,32}")


def split_command(text: str) -> tuple[str, str | None, str] | None:
    """`/claim@gridbot E7` → ('claim', 'gridbot', 'E7'); None if it is not a command."""
    match = _COMMAND.fullmatch(text.strip())
    if not match:
        return None
    return match[1], match[2], (match[3] or "").strip()


class Dispatcher:
    def __init__(self, app: App) -> None:
        self.app = app
        self._hinted: set[tuple[int, date]] = set()  # (person, day): asked to use a DM
        # Built once: it runs for every message.
        table = models.table(models.ProcessedMessage)
        insert = sqlite_insert if app.db.is_sqlite else postgresql_insert
        self._record_key = (
            insert(table).values(key=bindparam("key"), at=bindparam("at"))
            .on_conflict_do_nothing(index_elements=[table.c.key]).returning(table.c.key)
        )
        self._audit = models.table(models.AuditEntry).insert()

    async def handle(self, msg: Incoming, *, wait_for_delivery: bool = True) -> None:
        msg = replace(msg, text=normalise(msg.text))  # phone-typed forms, once (bot/normalise.py)
        parsed = split_command(msg.text)
        if parsed is None:
            return  # ordinary conversation in the chat
        name, addressed_to, args = parsed
        usernames = self.app.bot_usernames
        if addressed_to and usernames and addressed_to.lower() not in usernames:
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
        if ctx.private_input:
            await self._remove_private_input(ctx)

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
        """Handles the message in a transaction it may share with messages that arrived
        meanwhile (storage/db.py `grouped`): one commit for a burst of commands. Most
        commands are accepted, so the command runs without a savepoint of its own; one that
        says no is rolled back whole (its share of the transaction is its savepoint) and run
        again where its refusal rolls back alone and is answered, with the rows its reasons
        name still loaded."""
        try:
            handled = await self.app.db.grouped(partial(self._run_in, msg, name, args))
        except _SaidNo:
            handled = await self.app.db.grouped(
                partial(self._run_in, msg, name, args, answer_no=True)
            )
        if handled is None:
            return None  # a redelivered message: handled already
        ctx, seen = handled
        if seen is not None:
            self.app.context_cache.keep(msg, *seen)  # committed: those rows exist
        return ctx

    async def _run_in(
        self, msg: Incoming, name: str, args: str, db, *, answer_no: bool = False
    ) -> tuple[Context, tuple[Found, object] | None] | None:
        if not await self._first_delivery(db, msg):
            return None
        ctx, seen = await self.context(db, msg)
        if not answer_no:
            try:
                await self._execute(ctx, name, args)
            except GridbotError as problem:
                raise _SaidNo from problem
        else:
            kept = len(ctx.queued)
            try:
                async with db.begin_nested():
                    await self._execute(ctx, name, args)
            except GridbotError as problem:
                del ctx.queued[kept:]  # replies queued by the rolled-back command
                ctx.discard_unrendered()
                ctx.events.clear()
                ctx.outcome = f"refused:{getattr(problem, 'template', type(problem).__name__)}"
                ctx.private_input = False
                self._explain(ctx, name, args, problem)
        await ctx.seal()
        return ctx, seen

    async def _first_delivery(self, db, msg: Incoming) -> bool:
        """Records a redeliverable message as handled, in the caller's transaction; False if
        it was handled before."""
        if not msg.dedupe_key:
            return True
        # One statement: of two instances handed the same message, the second waits for the
        # first's commit and finds the key taken.
        conn = await db.connection()  # Core: the ORM adds nothing to one insert
        recorded = await conn.scalar(
            self._record_key, {"key": msg.dedupe_key, "at": self.app.clock.now()}
        )
        return recorded is not None

    async def context(
        self, db, msg: Incoming
    ) -> tuple[Context, tuple[Found, object] | None]:
        """Who is speaking, in which chat, community and grid, with which standing: from
        the context cache when it holds them, else looked up (and returned with the version
        they were read at, for the cache to keep once the transaction has committed)."""
        now = self.app.clock.now()
        cache = self.app.context_cache
        version = await cache.version(db)
        found = cache.get(db, msg, version)
        seen = None
        if found is None:
            found = await self._look_up(db, msg, now)
            seen = (found, version)
        context = Context(
            app=self.app, db=db, now=now, community=found.community, message=msg,
            person=found.person, chat=found.chat, grid=found.grid, standing=found.standing,
            communities=found.communities,
            role=found.standing.role(
                found.community.id if found.community else None,
                found.grid.id if found.grid else None,
            ),
        )
        return context, seen

    async def _look_up(self, db, msg: Incoming, now) -> Found:
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
            await db.flush()
        standing = await self.app.people.standing(db, person)
        mine: list[models.Community] = []
        if community is None:
            # A direct chat (or a group not linked yet) acts in the person's community: the
            # only one, or the one chosen with /use; never a silent pick among several.
            ids = standing.communities()
            if len(ids) > 1:
                mine = list(
                    await db.scalars(select(models.Community).where(models.Community.id.in_(ids)))
                )
                mine.sort(key=lambda c: ids.index(c.id))
            chosen = (
                person.current_community_id if person.current_community_id in ids
                else ids[0] if len(ids) == 1 else None
            )
            if chosen is not None:
                community = next((c for c in mine if c.id == chosen), None) or await db.get(
                    models.Community, chosen
                )
                home = standing.home_grid(chosen)
                if chat.is_direct and home is not None:
                    grid = await db.get(models.Grid, home)
        return Found(person=person, chat=chat, community=community, grid=grid,
                     standing=standing, communities=mine)

    def seat(self, ctx: Context) -> Seat:
        """The caller's seat for the access rule (bot/access.py)."""
        community = ctx.community
        if ctx.chat.is_direct:
            place = Place.DIRECT
        elif community is not None and ctx.chat.id == community.hq_chat_id:
            place = Place.HQ
        elif ctx.chat.grid_id is not None:
            place = Place.GRID
        else:
            place = Place.GROUP
        top = ctx.standing.top_role(community.id if community else None)
        return Seat(role=ctx.role, place=place, community=community is not None, top_role=top)

    async def _execute(self, ctx: Context, name: str, args: str) -> None:
        if len(ctx.message.text) > MAX_LENGTH:
            raise Reject("core/too_long", limit=MAX_LENGTH)
        if _CONTROL.search(ctx.message.text):
            raise Reject("core/control_characters")
        found = REGISTRY.find(name, args)
        if found is None and REGISTRY.group(name):
            raise ArgError("subcommand", word=args.split()[0] if args.split() else "")
        if found is None:
            raise Reject("core/unknown", name=name if _PLAIN_NAME.fullmatch(name.lower()) else None,
                         suggestions=self._suggest(name))
        cmd, argtext = found
        ctx.command = cmd
        if cmd.where is Where.COMMUNITY and ctx.community is None and len(ctx.communities) > 1:
            raise Reject("core/which_community", communities=ctx.communities)
        problem = refusal(cmd, self.seat(ctx))
        if problem is not None:
            raise problem
        if cmd.confirm or cmd.confirmable:
            words = argtext.split()
            if words and words[-1].lower() in CONFIRM_WORDS:
                ctx.confirmed = True
                argtext = argtext.strip()[: -len(words[-1])]
            if cmd.confirm and not ctx.confirmed:
                raise Confirm("core/confirm")
        values = await cmd.signature.parse(ctx, argtext)
        if cmd.role_grid is not None:
            problem = grid_refusal(cmd, ctx.role_in(values[cmd.role_grid]))
            if problem is not None:
                raise problem
        ctx.private_input = not ctx.chat.is_direct and self.seat(ctx).place is not Place.HQ and (
            cmd.signature.private_values(values)
        )
        ctx.db.info["audit"] = changes = []
        try:
            positional = [values.pop(p.name) for p in cmd.signature.params if p.variadic]
            await cmd.function(ctx, *(positional[0] if positional else ()), **values)
            await ctx.seal()
            await ctx.db.flush()
        finally:
            ctx.db.info.pop("audit", None)
        changes += ctx.extra_changes
        if changes:
            conn = await ctx.db.connection()
            await conn.execute(self._audit, {
                "at": ctx.now, "community_id": ctx.community.id if ctx.community else None,
                "person_id": ctx.person.id, "chat_id": ctx.chat.id, "command": cmd.name,
                "text": ctx.message.text[:1000], "refs": ctx.refs, "changes": changes,
            })

    def _explain(self, ctx: Context, name: str, args: str, problem: GridbotError) -> None:
        """Turns an error of the tree into a clear reply. In a group chat nothing typed is
        repeated: what was typed may be a name, a phone number or a temperature."""
        cmd = ctx.command
        if isinstance(problem, Confirm):
            again = f"/{name} {args.strip()} confirm".replace("  ", " ")
            values = dict(problem.values)
            label = values.pop("button", None) or ctx.render("core/confirm_button")
            ctx.reply(problem.template, **values, command=again,
                      buttons=[{"label": label, "command": again, "emoji": "✅"}])
        elif isinstance(problem, Reject):
            buttons = None
            if problem.template == "core/which_community":
                buttons = [{"label": c.name, "command": f"/use {c.name}", "emoji": ""}
                           for c in ctx.communities]
            ctx.reply(problem.template, **problem.values, usage=cmd.usage if cmd else "",
                      buttons=buttons)
        elif isinstance(problem, Refused):
            self._explain_refusal(ctx, name, problem)
        elif isinstance(problem, ArgError):
            values = dict(problem.values)
            if values.get("word") and not ctx.chat.is_direct:
                values["word"] = "…"  # typed text may be private: never repeated in a group
            if cmd is None or (cmd.sub and not args.strip()):
                usages = REGISTRY.group_usage(cmd.group if cmd else name)
            else:
                usages = [cmd.usage]
            ctx.reply(
                "core/usage", problem=ctx.render("args/" + problem.template, **values),
                usages=usages,
            )

    def _explain_refusal(self, ctx: Context, name: str, problem: Refused) -> None:
        seat = self.seat(ctx)
        hint = None
        in_group = seat.place is Place.GROUP
        if problem.where is Where.GRID and in_group and seat.best_role >= Role.LEADER:
            hint = "link"  # a leader in a group not linked yet
        elif problem.where is not None and not seat.community:
            hint = "join"  # not in any community yet
        ctx.reply(
            "core/refused",
            role=problem.role.key if problem.role is not None else None,
            where=str(problem.where) if problem.where else None,
            place=str(seat.place), hint=hint, join=problem.join,
            command=ctx.command.name if ctx.command else name,
            no_admins=not self.app.config.admins and ctx.message.transport != "console",
        )

    def _suggest(self, name: str) -> list[str]:
        """Commands whose name or alias is spelt close to what was typed."""
        names = REGISTRY.names()
        typed = name.lower()
        close = get_close_matches(typed, list(names), n=3, cutoff=0.75)
        if len(typed) >= 3:
            close += [n for n in names if n.startswith(typed) and n not in close]
        return list(dict.fromkeys(names[n] for n in close))[:3]

    async def _remove_private_input(self, ctx: Context) -> None:
        """Private details were typed in a group: the command was stored and answered
        without them; now the message itself is removed from the group where the bot has
        the right to, else the person is asked by direct message to use one next time."""
        msg = ctx.message
        transport = self.app.transports.get(msg.transport)
        removed = False
        if transport is not None and msg.message_id and transport.capabilities.delete:
            try:
                removed = await transport.delete(msg.chat, msg.message_id)
            except Exception:
                log.warning("could not remove a message with private details from %s", msg.chat)
        if removed:
            return
        hint = (ctx.person.id, ctx.today)
        if hint in self._hinted:
            return  # asked today already (the database says so too; this saves the look)
        async with self.app.db.transaction() as db:
            actions = Actions(
                app=self.app, db=db, now=self.app.clock.now(), community=ctx.community
            )
            # Asked once a day at most: a reminder, not a telling-off at every check-in.
            key, today = f"hint:private-input:{ctx.person.id}", actions.today.isoformat()
            asked = await db.get(models.KeyValue, key)
            if asked is not None and asked.value == today:
                self._hinted.add(hint)
                return
            await db.merge(models.KeyValue(key=key, value=today))
            person = await load(db, models.Person, ctx.person.id)
            chat = await db.get(models.Chat, ctx.chat.id)
            actions.tell(person, "core/private_in_group", origin=chat,
                         command=ctx.command.name if ctx.command else "")
            await actions.seal()
        if len(self._hinted) > 10_000:
            self._hinted.clear()  # older days' entries; the database remembers
        self._hinted.add(hint)
        await self.app.outbox.deliver(actions.queued)

    async def _tell_unavailable(self, msg: Incoming) -> None:
        """The database cannot be reached: says so straight through the transport (nothing
        can be queued), so that the person knows to send the command again."""
        transport = self.app.transports.get(msg.transport)
        if transport is None:
            return
        text = self.app.renderer.render(self.app.config.lang, "core/try_again")
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
                ctx, _ = await self.context(db, msg)
                ctx.reply("core/internal_error")
                await ctx.seal()
                return ctx
        except Exception:
            log.exception("could not even apologise for %r", msg.text[:200])
            return None


class _SaidNo(Exception):
    """A command said no (an error of the tree, bot/errors.py): its unit of work is rolled
    back, and the command run again to answer it."""


def usable_here(ctx: Context, cmd: Command) -> bool:
    """The dry run of the access rule, for /help and /start."""
    return allowed(cmd, ctx.app.dispatcher.seat(ctx))

"""The Telegram transport: python-telegram-bot 22 run inside the bot's own asyncio loop.

Updates arrive by long polling, or by webhook when GRIDBOT_TELEGRAM_WEBHOOK_URL is set. The
updates of one `getUpdates` batch are handled side by side, each chat's in order (so that
commands arriving together share one commit: storage/db.py `grouped`); the batch is confirmed
(the next `getUpdates`) only once all of it is handled. Each becomes an `Incoming` with the
dedupe key `telegram:<update_id>`: Telegram redelivers an update until it is confirmed, and
the dispatcher records the key with the command's effect, so a redelivered update is skipped.

Messages go out as plain text (no parse mode: what a user typed, `<b>` or `&`, comes back as
typed), split at Telegram's 4,096 characters, with buttons as an inline keyboard whose
callback data is the command to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import math
import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from telegram import (
    BotCommand,
    BotCommandScope,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    Chat,
    Document,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import InlineKeyboardButtonLimit, MessageLimit
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseRateLimiter,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    Updater,
    filters,
)
from telegram.request import HTTPXRequest

from bot.access import Place, Seat, allowed
from bot.config import Config, ConfigError
from bot.registry import REGISTRY, Command
from bot.roles import Role
from bot.transports.base import (
    Attachment,
    Budget,
    CannotDeliver,
    Capabilities,
    Incoming,
    Outgoing,
    Sent,
    split_text,
)
from bot.transports.telegram_http import AiohttpRequest

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_LENGTH = MessageLimit.MAX_TEXT_LENGTH
PER_SECOND = 30  # Telegram: calls a second, overall
# Telegram: 20 messages a minute to one group. Half may go at once; the rest refill over the
# minute (10 + 10/60 s × 60 s = 20 in any rolling minute), so a burst's first ten replies go
# out at once and whatever waits after them goes out merged within seconds.
GROUP_PER_MINUTE = 20
GROUP_BURST = 10
MAX_CAPTION = MessageLimit.CAPTION_LENGTH
MAX_CALLBACK_DATA = InlineKeyboardButtonLimit.MAX_CALLBACK_DATA
MAX_MENU = 100  # commands per menu scope
MENU_NAME = re.compile(r"[a-z0-9_]{1,32}")  # what Telegram accepts as a command name
BUTTONS_PER_ROW = 3
UPDATES_AT_ONCE = 256  # updates handled side by side (and HTTP connections for sending)
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]
# Transient failures (timeouts, 5xx) are retried here a few times; after that, or when flood
# control outlasts the rate limiter's own retries, the outbox keeps the message for later.
ATTEMPTS = 3
FIRST_BACKOFF = 0.5  # seconds; doubled after each failure
# Commands start with a slash, ASCII or full-width. A MessageHandler, not a CommandHandler:
# the latter refuses non-ASCII names such as the Chinese aliases.
COMMAND_TEXT = filters.Regex(r"^\s*[/／]") | filters.CaptionRegex(r"^\s*[/／]")
# The seats the menus are for (the access rule's dry run, bot/access.py): a member in a grid
# chat, a member in a private chat, an admin in a private chat or a group.
GROUP_MEMBER = Seat(role=Role.MEMBER, place=Place.GRID, community=True)
PRIVATE_MEMBER = Seat(role=Role.MEMBER, place=Place.DIRECT, community=True)
PRIVATE_ADMIN = Seat(role=Role.ADMIN, place=Place.DIRECT, community=True)
GROUP_ADMIN = Seat(role=Role.ADMIN, place=Place.GROUP, community=True)


class HandOffQueue(asyncio.Queue):
    """PTB's update queue. With a webhook, `put` returns only once the update has been
    handled: PTB's webhook answers Telegram when `put` returns, and Telegram forgets the
    update then. With polling, `put` returns at once and `ConfirmingBot` waits instead."""

    def __init__(self, *, wait_in_put: bool) -> None:
        super().__init__()
        self.wait_in_put = wait_in_put

    async def put(self, item: Any) -> None:
        await super().put(item)
        if self.wait_in_put:
            await self.join()  # the Application marks each update done once processed


class ConfirmingBot(ExtBot):
    """Asks for the next updates, which confirms the last batch to Telegram (its offset),
    only once every update handed over has been handled: a crash mid-batch gets the rest
    of the batch redelivered."""

    __slots__ = ("_handed_over",)

    def __init__(self, *args: Any, handed_over: asyncio.Queue, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handed_over = handed_over

    async def get_updates(self, *args: Any, **kwargs: Any) -> Any:
        await self._handed_over.join()
        return await super().get_updates(*args, **kwargs)


class ChatOrder(BaseUpdateProcessor):
    """Updates handled side by side, except that each chat's go one after another, in the
    order they came: different chats' commands can share a commit, one chat's answers
    never overtake each other."""

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        self._last: dict[int | None, asyncio.Future] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat if isinstance(update, Update) else None
        key = chat.id if chat is not None else None
        before = self._last.get(key)
        mine = asyncio.get_running_loop().create_future()
        self._last[key] = mine
        try:
            if before is not None:
                try:
                    await asyncio.shield(before)
                except asyncio.CancelledError:
                    if inspect.iscoroutine(coroutine):
                        coroutine.close()  # stopped before its turn: never started
                    raise
            await coroutine
        finally:
            mine.set_result(None)
            if self._last.get(key) is mine:
                del self._last[key]

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


def webhook_secret(token: str) -> str:
    """The secret Telegram sends with each webhook call; derived from the token, so it needs
    no setting of its own and stays the same across restarts."""
    return hashlib.sha256(b"gridbot-webhook:" + token.encode()).hexdigest()


class TelegramRateLimiter(BaseRateLimiter[int]):
    """Telegram's overall limit, 30 calls a second, held in EVERY rolling second as Telegram
    sees it, not just on average: a call holds one of 30 slots from the moment it leaves
    until a second after its answer came back (it reached Telegram somewhere in between), so
    no second at Telegram's end can see more than 30, however late a busy event loop sends.
    Unlike a leaky bucket, a late wake-up is made up for, so a fan-out runs at the full
    rate, less the calls' own latency. `RetryAfter` (Telegram's 429) pauses every request
    for as long as it says.

    No sound rule does better knowing only when a call left (s) and when its answer came (e):
    it reached Telegram at some unknown moment in [s, e], so a set of calls can all land in
    one second at Telegram's end exactly when their spans [s, e + 1) share a moment, and that
    is what the slots count. Throughput is therefore 30 / (1 + e - s) a second: the lever is
    a short e - s, i.e. little CPU per call (see telegram_http.py) and a quick server.

    The per-group limit, 20 messages a minute, is the outbox's (see
    `TelegramTransport.budget`): it merges the replies that wait for a group instead of
    sending them one every 3 s."""

    def __init__(self, per_second: int = PER_SECOND, max_retries: int = 3) -> None:
        self.per_second, self.max_retries = per_second, max_retries
        self._slots: list[float] = []  # when each taken slot frees up (inf: call under way)
        self._turn = asyncio.Lock()  # callers queue here, first come first served
        self._freed = asyncio.Event()  # a call under way ended: its slot's time is known
        self._open = asyncio.Event()
        self._open.set()

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def _take(self) -> None:
        """A slot for one call. Only the caller at the head of the queue watches the slots
        (a fan-out to a thousand chats is a thousand callers waiting, none of them woken)."""
        loop = asyncio.get_running_loop()
        async with self._turn:
            while True:
                await self._open.wait()
                now = loop.time()
                self._slots = [free for free in self._slots if free > now]
                if len(self._slots) < self.per_second:
                    self._slots.append(math.inf)
                    return
                self._freed.clear()
                first = min(self._slots)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._freed.wait(), None if first == math.inf else first - now
                    )

    def _release(self) -> None:
        # A call under way ends now: one second from now its slot frees.
        self._slots[self._slots.index(math.inf)] = asyncio.get_running_loop().time() + 1.0
        self._freed.set()

    async def process_request(self, callback, args, kwargs, endpoint, data, rate_limit_args):
        limited = data.get("chat_id") is not None
        for attempt in range(self.max_retries + 1):
            if limited:
                await self._take()
            else:
                await self._open.wait()
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as error:
                if attempt == self.max_retries:
                    raise
                pause = error.retry_after
                pause = pause.total_seconds() if hasattr(pause, "total_seconds") else pause
                log.info("telegram: flood control, every request waits %.1f s", pause)
                self._open.clear()
                try:
                    await asyncio.sleep(pause + 0.1)
                finally:
                    self._open.set()
            finally:
                if limited:
                    self._release()
        raise AssertionError("unreachable")


class TelegramTransport:
    name = "telegram"
    builtin_admins: frozenset[str] = frozenset()
    app: App  # given by `start`

    def mention(self, word: str) -> tuple[str | None, str | None]:
        """`@123456789` is a numeric user id; `@alice` a username."""
        name = word.lstrip("@")
        return (name, None) if name.isdigit() else (None, name.lower())
    capabilities = Capabilities(
        buttons=True, files=True, pin=True, delete=True, max_length=MAX_LENGTH
    )

    def __init__(self, config: Config) -> None:
        if not config.telegram_token:
            raise ConfigError("the Telegram transport needs GRIDBOT_TELEGRAM_TOKEN")
        self.config = config
        self.token = config.telegram_token
        root = config.telegram_api_url
        updates = HandOffQueue(wait_in_put=bool(config.telegram_webhook_url))
        bot = ConfirmingBot(
            self.token,
            base_url=f"{root}/bot",
            base_file_url=f"{root}/file/bot",
            # The bot's calls through aiohttp (telegram_http.py); getUpdates keeps PTB's client.
            request=AiohttpRequest(connections=UPDATES_AT_ONCE),
            get_updates_request=HTTPXRequest(),
            # Several instances on one token: each keeps to its share of the limits.
            rate_limiter=TelegramRateLimiter(max(1, PER_SECOND // config.telegram_instances)),
            handed_over=updates,
        )
        self.ptb: Application = (
            ApplicationBuilder()
            .bot(bot)
            .update_queue(updates)
            .concurrent_updates(ChatOrder(UPDATES_AT_ONCE))
            .build()
        )
        commands = filters.UpdateType.MESSAGE & COMMAND_TEXT  # not edits, not channel posts
        self.ptb.add_handler(MessageHandler(commands, self._on_message))
        self.ptb.add_handler(CallbackQueryHandler(self._on_button))
        # Message ids of the parts already sent, per Outgoing.key, so a retry by the outbox
        # sends only the parts that did not go out.
        self._sent_parts: dict[str, list[str]] = {}
        self._budgets: dict[str, Budget] = {}

    async def start(self, app: App) -> None:
        self.app = app
        await self.ptb.initialize()  # getMe: who we are
        app.bot_usernames.add(self.ptb.bot.username.lower())
        await self._publish_menus(app)
        if self.config.telegram_webhook_url:
            await self._check_webhook(self.config.telegram_webhook_url)
            await self._start_webhook(self.config.telegram_webhook_url)
        else:
            await self._updater.start_polling(allowed_updates=ALLOWED_UPDATES)
        await self.ptb.start()

    async def stop_taking(self) -> None:
        """No new updates: those handed over are handled, then confirmed (polling: the
        updater's last `getUpdates` waits for them, see ConfirmingBot)."""
        if self._updater.running:
            await self._updater.stop()
        if self.ptb.running:
            await self.ptb.stop()

    async def stop(self) -> None:
        await self.stop_taking()
        await self.app.outbox.idle()  # its answers go out while the bot can still send
        await self.ptb.shutdown()

    @property
    def _updater(self) -> Updater:
        updater = self.ptb.updater
        assert updater is not None  # ApplicationBuilder makes one unless told not to
        return updater

    async def _start_webhook(self, url: str) -> None:
        host, _, port = self.config.telegram_webhook_listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                "GRIDBOT_TELEGRAM_WEBHOOK_LISTEN must be host:port, "
                f"not {self.config.telegram_webhook_listen!r}"
            )
        await self._updater.start_webhook(
            listen=host,
            port=int(port),
            url_path=urlsplit(url).path,
            webhook_url=url,
            secret_token=webhook_secret(self.token),
            allowed_updates=ALLOWED_UPDATES,
            # Telegram answers an update's call only after it was handled (see HandOffQueue)
            # and sends a chat's next message only once the previous one's call is answered,
            # so each chat's commands stay in order however many calls run at once — handed
            # round several instances by a load balancer, they run side by side.
            max_connections=self.config.telegram_webhook_connections,
        )

    async def _check_webhook(self, url: str) -> None:
        """Every instance registers the same webhook (URL, secret, connections, update
        types; pending updates kept), so starting one more changes nothing. One that differs
        is named in the log: the last to start wins, for all of them."""
        try:
            info = await self.ptb.bot.get_webhook_info()
        except TelegramError as error:
            log.warning("telegram: could not read the webhook registered: %s", error)
            return
        registered = info.url, info.max_connections
        if info.url and registered != (url, self.config.telegram_webhook_connections):
            log.warning(
                "telegram: replacing the webhook %s (max_connections=%s) with %s "
                "(max_connections=%s): every instance of one bot needs the same "
                "GRIDBOT_TELEGRAM_WEBHOOK_URL and GRIDBOT_TELEGRAM_WEBHOOK_CONNECTIONS",
                info.url, info.max_connections, url, self.config.telegram_webhook_connections,
            )

    # -- incoming ---------------------------------------------------------------------------

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message  # the handler's filter lets only new messages through
        if message is None or message.from_user is None:
            return  # a channel post: nobody to act for
        user = message.from_user
        replied = message.reply_to_message
        await self.app.handle(
            Incoming(
                transport=self.name,
                chat=str(message.chat.id),
                sender=str(user.id),
                text=message.text or message.caption or "",
                is_direct=message.chat.type == Chat.PRIVATE,
                sender_name=user.full_name,
                sender_username=user.username,
                chat_title=message.chat.effective_name or "",
                attachments=await self._attachments(message),
                message_id=str(message.message_id),
                reply_to=str(replied.message_id) if replied else None,
                dedupe_key=f"telegram:{update.update_id}",
            ),
            wait_for_delivery=False,  # a group held back by its rate limit must not hold up others
        )

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A pressed inline button runs its command as if the presser had typed it there."""
        query = update.callback_query
        if query is None:
            return
        try:
            await query.answer()  # stops the button's spinner
        except TelegramError as error:
            log.info("could not answer a button press (redelivered after a restart?): %s", error)
        pressed_on = query.message
        if pressed_on is None or not query.data:
            return
        await self.app.handle(
            Incoming(
                transport=self.name,
                chat=str(pressed_on.chat.id),
                sender=str(query.from_user.id),
                text=query.data,
                is_direct=pressed_on.chat.type == Chat.PRIVATE,
                sender_name=query.from_user.full_name,
                sender_username=query.from_user.username,
                chat_title=pressed_on.chat.effective_name or "",
                reply_to=str(pressed_on.message_id),
                dedupe_key=f"telegram:{update.update_id}",
            ),
            wait_for_delivery=False,
        )

    async def _attachments(self, message: Message) -> tuple[Attachment, ...]:
        """The document sent with the command, or with the message the command replies to."""
        replied = message.reply_to_message
        document: Document | None = message.document or (replied.document if replied else None)
        if document is None:
            return ()
        try:
            file = await _retry(document.get_file, "getting a file")
            data = await _retry(file.download_as_bytearray, "downloading a file")
        except TelegramError as error:
            # The command runs without it and says that a file is needed.
            log.warning("could not download %s: %s", document.file_name, error)
            return ()
        return (Attachment(name=document.file_name or "document", data=bytes(data)),)

    # -- outgoing ---------------------------------------------------------------------------

    def budget(self, chat: str) -> Budget | None:
        """A group's allowance (pins and parts count); private chats have none of their own."""
        if not chat.startswith("-"):
            return None
        budget = self._budgets.get(chat)
        if budget is None:
            # With n instances on one token, each has 1/n of the group's minute.
            share = GROUP_PER_MINUTE / self.config.telegram_instances
            burst = max(1, GROUP_BURST // self.config.telegram_instances)
            budget = self._budgets[chat] = Budget(burst, max(0.0, share - burst) / 60)
        return budget

    def calls(self, message: Outgoing) -> int:
        """The Bot API calls `_deliver` makes for a message."""
        _keyboard_markup, hints = _keyboard(message.buttons)
        text = message.text + hints
        if message.file_name and len(text) <= MAX_CAPTION:
            text = ""
        parts = len(split_text(text, MAX_LENGTH)) if text.strip() else 0
        return max(1, parts + bool(message.file_name) + bool(message.pin))

    async def send(self, chat: str, message: Outgoing) -> Sent:
        return await self._deliver(chat, message)

    async def send_direct(self, user: str, dm_chat: str | None, message: Outgoing) -> Sent:
        # A private chat's id is the user's id; writing there fails with 403 Forbidden until
        # the person has started the bot (→ CannotDeliver).
        chat = dm_chat or user
        if not chat:
            raise CannotDeliver("this person has never written on Telegram")
        return await self._deliver(chat, message)

    async def delete(self, chat: str, message_id: str) -> bool:
        """Removes a person's message; needs the bot to be a group admin with the right to
        delete messages (Telegram answers 400 otherwise)."""
        try:
            return bool(await self.ptb.bot.delete_message(int(chat), int(message_id)))
        except TelegramError as error:
            log.info("could not delete message %s in %s: %s", message_id, chat, error)
            return False

    async def _deliver(self, chat: str, message: Outgoing) -> Sent:
        """Sends the text (in parts if long) and the file; buttons go on the last message."""
        keyboard, hints = _keyboard(message.buttons)
        text = message.text + hints
        caption = None
        if message.file_name and len(text) <= MAX_CAPTION:
            caption, text = text or None, ""
        bot, reply = self.ptb.bot, _reply_parameters(message.reply_to)
        steps = [
            partial(bot.send_message, int(chat), part, reply_parameters=reply)
            for part in (split_text(text, MAX_LENGTH) if text.strip() else [])
        ]
        if message.file_name:
            steps.append(partial(
                bot.send_document, int(chat), message.file_data or b"",
                filename=message.file_name, caption=caption, reply_parameters=reply,
            ))
        sent = self._sent_parts.setdefault(message.key, []) if message.key else []
        try:
            for number, step in enumerate(steps[len(sent) :], start=len(sent)):
                markup = keyboard if number == len(steps) - 1 else None
                posted = await _retry(
                    partial(_refusal_as_cannot_deliver, step, reply_markup=markup),
                    f"sending to chat {chat}",
                )
                sent.append(str(posted.message_id))
        except CannotDeliver:
            self._sent_parts.pop(message.key, None)
            raise
        self._sent_parts.pop(message.key, None)
        if message.pin and sent:
            await self._pin(chat, sent[0])
        return Sent(chat=chat, message_ids=list(sent))

    async def _pin(self, chat: str, message_id: str) -> None:
        try:
            await self.ptb.bot.pin_chat_message(
                int(chat), int(message_id), disable_notification=True
            )
        except TelegramError as error:
            # Pinning needs admin rights in the group; the message itself has been delivered.
            log.warning("could not pin message %s in %s: %s", message_id, chat, error)

    # -- command menu -----------------------------------------------------------------------

    async def _publish_menus(self, app: App) -> None:
        """The command menus: everyone's commands in groups and in private chats; each
        admin's private chat also lists the admin commands. Names Telegram refuses (the
        Chinese aliases) are left out of the menus; they still work when typed."""
        summaries = app.renderer.summaries(self.config.lang)
        menus: list[tuple[BotCommandScope, list[BotCommand]]] = [
            (BotCommandScopeAllGroupChats(),
             _menu(summaries, lambda c: allowed(c, GROUP_MEMBER))),
            (BotCommandScopeAllPrivateChats(),
             _menu(summaries, lambda c: allowed(c, PRIVATE_MEMBER))),
        ]
        admin_menu = _menu(
            summaries, lambda c: allowed(c, PRIVATE_ADMIN) or allowed(c, GROUP_ADMIN)
        )
        menus += [
            (BotCommandScopeChat(int(admin)), admin_menu)
            for admin in self.config.admins
            if admin.isdigit()  # a Telegram user id (others are @names or Matrix ids)
        ]
        for scope, commands in menus:
            try:
                await self.ptb.bot.set_my_commands(commands, scope=scope)
            except TelegramError as error:
                log.warning("could not set the command menu for %s: %s", scope.type, error)


def _menu(summaries: dict[str, str], wanted: Callable[[Command], bool]) -> list[BotCommand]:
    menu = []
    for group, subs in sorted(REGISTRY.groups.items()):
        shown = [cmd for cmd in subs.values() if wanted(cmd)]
        if shown and MENU_NAME.fullmatch(group):
            menu.append(BotCommand(group, _description(summaries, shown)))
    return menu[:MAX_MENU]


def _description(summaries: dict[str, str], commands: list[Command]) -> str:
    """A command's one-line help; a group of sub-commands lists them (`add, link, list`)."""
    if len(commands) == 1:
        cmd = commands[0]
        summary = summaries.get(cmd.name, cmd.summary)
        text = f"{cmd.sub}: {summary}" if cmd.sub else summary
    else:
        text = ", ".join(cmd.sub or cmd.group for cmd in commands)
    return (text or commands[0].group)[:256]


def _keyboard(buttons: tuple[dict[str, str], ...]) -> tuple[InlineKeyboardMarkup | None, str]:
    """The inline keyboard, and a text hint for any command too long to ride on a button."""
    keys, hints = [], []
    for button in buttons:
        label = f"{button.get('emoji', '')} {button['label']}".strip()
        if len(button["command"].encode()) <= MAX_CALLBACK_DATA:
            keys.append(InlineKeyboardButton(label, callback_data=button["command"]))
        else:
            hints.append(f"[{button['label']}: {button['command']}]")
    rows = [keys[i : i + BUTTONS_PER_ROW] for i in range(0, len(keys), BUTTONS_PER_ROW)]
    keyboard = InlineKeyboardMarkup(rows) if rows else None
    return keyboard, ("\n" + "  ".join(hints) if hints else "")


def _reply_parameters(reply_to: str | None) -> ReplyParameters | None:
    if not reply_to or not reply_to.isdigit():
        return None
    return ReplyParameters(int(reply_to), allow_sending_without_reply=True)


async def _refusal_as_cannot_deliver(request: Callable[..., Awaitable[T]], **values: Any) -> T:
    """Telegram's permanent refusals become CannotDeliver: 403 (the person never started the
    bot, or the bot left the group), 400 (chat not found, ...), a group that migrated."""
    try:
        return await request(**values)
    except (Forbidden, BadRequest, ChatMigrated) as error:
        raise CannotDeliver(str(error)) from error


async def _retry(action: Callable[[], Awaitable[T]], what: str) -> T:
    """Runs `action`, again after a growing pause while it fails with a transient error: a
    timeout, a lost connection, a 5xx answer (not a 400, a BadRequest, which would fail again)."""
    pause = FIRST_BACKOFF
    for _ in range(ATTEMPTS - 1):
        try:
            return await action()
        except NetworkError as error:
            if isinstance(error, BadRequest):
                raise
            log.warning("%s failed (%s); trying again in %.1f s", what, error, pause)
            await asyncio.sleep(pause)
            pause *= 2
    return await action()

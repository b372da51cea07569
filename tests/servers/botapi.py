"""A local Telegram Bot API server for integration tests.

It speaks the HTTP Bot API (https://core.telegram.org/bots/api) closely enough that the
real python-telegram-bot client, its polling loop and its ``AIORateLimiter`` run against it
unchanged::

    async with FakeBotAPI() as api:
        app = (
            ApplicationBuilder().token(api.token)
            .base_url(api.base_url).base_file_url(api.base_file_url).build()
        )

Tests play the users with plain methods (``add_user``, ``user_says``, ``user_presses``, ...)
and inspect what the bot did (``sent``, ``answered_callbacks``, ``calls``). The behaviour
bots trip over in production is kept on purpose:

- updates are redelivered until a later ``offset`` confirms them; ``timeout`` long-polls; a
  second poller terminates the first with 409 Conflict;
- a bot cannot write first to a user (403) and only sees a group's commands, mentions and
  replies to itself while privacy mode is on (Telegram's default);
- HTML must be well formed, texts are at most 4096 characters, editing without a change is
  refused, and ``editMessageText`` without ``reply_markup`` drops the inline keyboard;
- faults (429 with ``retry_after``, 5xx) can be injected per method.

Not modelled: Markdown parse modes (accepted, not parsed), webhook delivery (``setWebhook``
is only stored), inline mode, chat member rights, and Telegram's own flood limits (the
call log lets tests measure the outbound rate instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import mimetypes
import re
import secrets
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import PurePosixPath
from types import TracebackType
from typing import Any, TypedDict

import pytest_asyncio
from aiohttp import web

__all__ = ["ApiError", "Call", "FakeBotAPI", "HtmlError", "SentMessage", "botapi", "parse_html"]

JSON = dict[str, Any]

_log = logging.getLogger(__name__)

# Limits documented at https://core.telegram.org/bots/api
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # getFile refuses bigger files
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # what a bot may upload
_SUPERGROUP_IDS_BELOW = -1_000_000_000_000  # supergroup ids look like -100xxxxxxxxxx
_CHAT_ACTIONS = frozenset(
    {
        "typing", "upload_photo", "record_video", "upload_video", "record_voice",
        "upload_voice", "upload_document", "choose_sticker", "find_location",
        "record_video_note", "upload_video_note",
    }
)  # fmt: skip
_BOT_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
# Entities a Telegram client detects in what a user types.
_COMMAND_IN_TEXT = re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")
_MENTION_IN_TEXT = re.compile(r"(?<![\w@/])@[A-Za-z0-9_]{5,32}(?![A-Za-z0-9_])")
_LEADING_COMMAND = re.compile(r"/[A-Za-z0-9_]+(?:@([A-Za-z0-9_]+))?")


class ApiError(Exception):
    """An error answer: the HTTP status is the ``error_code``, as Telegram does it."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = int(status)
        self.description = description
        self.parameters = parameters

    def body(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad_request(reason: str) -> ApiError:
    return ApiError(HTTPStatus.BAD_REQUEST, f"Bad Request: {reason}")


@dataclass(frozen=True)
class Call:
    """One answered Bot API call: ``at`` is ``time.monotonic()`` on arrival, ``params`` are
    as received (form values are strings; uploads show as "<name: N bytes>")."""

    method: str
    at: float
    params: JSON
    status: int


class SentMessage(TypedDict):
    """A message the bot sent. Edits update ``text``, ``parse_mode``, ``reply_markup`` and
    ``message`` in place, so a record always shows what the chat currently shows."""

    chat_id: int
    message_id: int
    method: str  # sendMessage or sendDocument
    text: str | None  # as the bot sent it, markup included
    parse_mode: str | None
    reply_markup: JSON | None
    caption: str | None
    document_name: str | None
    document_bytes: bytes | None
    at: float  # time.monotonic() when it was sent
    message: JSON  # the Message object Telegram returned: plain text plus entities


@dataclass(frozen=True)
class _Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class _StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    file_name: str
    mime_type: str
    data: bytes

    def document(self) -> JSON:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_name": self.file_name,
            "mime_type": self.mime_type,
            "file_size": len(self.data),
        }


class _Signal:
    """Wakes every waiter on each ``notify()``; sync, so control methods can call it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self) -> None:
        await self._event.wait()  # callers check their condition first, with no await between


class _Params:
    """A call's parameters. Telegram takes them as JSON, query string, urlencoded or
    multipart form; in the form encodings every value is a string (PTB JSON-encodes the
    non-string ones), so each is converted to the type the method expects."""

    def __init__(self, values: Mapping[str, Any], files: Mapping[str, _Upload]) -> None:
        self._values = dict(values)
        self.files = dict(files)

    def for_log(self) -> JSON:
        uploads = {k: f"<{f.filename}: {len(f.data)} bytes>" for k, f in self.files.items()}
        return {**self._values, **uploads}

    def has(self, name: str) -> bool:
        return name in self._values or name in self.files

    def get_str(self, name: str) -> str | None:
        value = self._values.get(name)
        return None if value is None else str(value)

    def get_int(self, name: str) -> int | None:
        value = self._values.get(name)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _bad_request(f"invalid {name} specified") from None

    def required_int(self, name: str) -> int:
        value = self.get_int(name)
        if value is None:
            raise _bad_request(f"{name} is empty")
        return value

    def get_float(self, name: str) -> float | None:
        value = self._values.get(name)
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            raise _bad_request(f"invalid {name} specified") from None

    def get_bool(self, name: str) -> bool:
        value = self._values.get(name)
        return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))

    def get_json(self, name: str) -> Any:
        value = self._values.get(name)
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise _bad_request(f"can't parse {name} JSON object") from None


async def _read_params(request: web.Request) -> _Params:
    values: dict[str, Any] = dict(request.query)
    files: dict[str, _Upload] = {}
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise _bad_request("can't parse JSON request body") from None
        if not isinstance(body, dict):
            raise _bad_request("request body must be a JSON object")
        values.update(body)
    else:
        for key, value in (await request.post()).items():
            if isinstance(value, web.FileField):
                data = value.file.read()
                files[key] = _Upload(value.filename, value.content_type, data)
            else:
                values[key] = value.decode() if isinstance(value, bytes | bytearray) else value
    return _Params(values, files)


# -- HTML parse mode -------------------------------------------------------------------


class HtmlError(ValueError):
    """Malformed HTML; the message is Telegram's (after "can't parse entities: ")."""


_TAG_ENTITY_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic",
    "u": "underline", "ins": "underline", "s": "strikethrough", "strike": "strikethrough",
    "del": "strikethrough", "tg-spoiler": "spoiler", "span": "spoiler", "a": "text_link",
    "code": "code", "pre": "pre", "blockquote": "blockquote", "tg-emoji": "custom_emoji",
}  # fmt: skip
_NAMED_CHARACTERS = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_CHARACTER_REFERENCE = re.compile(r"&(?:#[xX]([0-9a-fA-F]{1,8})|#([0-9]{1,8})|([a-zA-Z]+));")


def _utf16_len(text: str) -> int:
    """Entity offsets and lengths are counted in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _character_reference(source: str, at: int) -> tuple[str, int]:
    """Decodes the reference starting at ``source[at] == "&"``. Telegram supports only the
    four named ones and numeric ones, and keeps anything else as a literal "&"."""
    match = _CHARACTER_REFERENCE.match(source, at)
    if match:
        hex_code, decimal_code, name = match.groups()
        if name:
            if name in _NAMED_CHARACTERS:
                return _NAMED_CHARACTERS[name], match.end()
        else:
            code = int(hex_code, 16) if hex_code else int(decimal_code)
            if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                return chr(code), match.end()
    return "&", at + 1


def _unescape(text: str) -> str:
    out: list[str] = []
    at = 0
    while at < len(text):
        if text[at] == "&":
            char, at = _character_reference(text, at)
        else:
            char, at = text[at], at + 1
        out.append(char)
    return "".join(out)


@dataclass
class _OpenTag:
    name: str
    attributes: dict[str, str]
    offset: int  # in UTF-16 units of the plain text
    language: str | None = None  # set by a nested <code class="language-...">


class _HtmlParser:
    """Telegram's HTML parse mode, with its error messages."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.at = 0
        self.pieces: list[str] = []
        self.length = 0  # UTF-16 units of plain text so far
        self.open: list[_OpenTag] = []
        self.entities: list[JSON] = []

    def parse(self) -> tuple[str, list[JSON]]:
        source = self.source
        while self.at < len(source):
            char = source[self.at]
            if char == "<":
                if source.startswith("</", self.at):
                    self._end_tag()
                else:
                    self._start_tag()
                continue
            if char == "&":
                char, self.at = _character_reference(source, self.at)
            else:
                self.at += 1
            self.pieces.append(char)
            self.length += _utf16_len(char)
        if self.open:
            raise HtmlError(
                f'Can\'t find end tag corresponding to start tag "{self.open[-1].name}"'
            )
        self.entities.sort(key=lambda entity: (entity["offset"], -entity["length"]))
        return "".join(self.pieces), self.entities

    def _error(self, what: str, at: int) -> HtmlError:
        return HtmlError(f"{what} at byte offset {len(self.source[:at].encode())}")

    def _skip_spaces(self) -> None:
        while self.at < len(self.source) and self.source[self.at].isspace():
            self.at += 1

    def _word(self, stop: str) -> str:
        begin = self.at
        while self.at < len(self.source) and not (
            self.source[self.at].isspace() or self.source[self.at] in stop
        ):
            self.at += 1
        return self.source[begin : self.at]

    def _start_tag(self) -> None:
        begin = self.at
        self.at += 1
        name = self._word(">").lower()
        if self.at >= len(self.source):
            raise self._error("Unclosed start tag", begin)
        if name not in _TAG_ENTITY_TYPES:
            raise self._error(f'Unsupported start tag "{name}"', begin)
        attributes = self._attributes(name, begin)
        if name == "span" and attributes.get("class") != "tg-spoiler":
            raise self._error('Tag "span" must have class "tg-spoiler"', begin)
        self.open.append(_OpenTag(name, attributes, self.length))

    def _attributes(self, tag: str, begin: int) -> dict[str, str]:
        attributes: dict[str, str] = {}
        while True:
            self._skip_spaces()
            if self.at >= len(self.source):
                raise self._error(f'Unclosed start tag "{tag}"', begin)
            if self.source[self.at] == ">":
                self.at += 1
                return attributes
            name = self._word("=>").lower()
            if not name:
                raise self._error(f'Empty attribute name in the tag "{tag}"', begin)
            self._skip_spaces()
            if self.at >= len(self.source) or self.source[self.at] != "=":
                if tag == "blockquote" and name == "expandable":  # the one bare attribute
                    attributes[name] = ""
                    continue
                raise self._error(
                    f'Expected equal sign in declaration of an attribute of the tag "{tag}"', begin
                )
            self.at += 1
            self._skip_spaces()
            attributes[name] = self._attribute_value(tag, begin)

    def _attribute_value(self, tag: str, begin: int) -> str:
        if self.at >= len(self.source):
            raise self._error(f'Unclosed start tag "{tag}"', begin)
        quote = self.source[self.at]
        if quote in "'\"":
            end = self.source.find(quote, self.at + 1)
            if end < 0:
                raise self._error(f'Unclosed start tag "{tag}"', begin)
            value = self.source[self.at + 1 : end]
            self.at = end + 1
            return _unescape(value)
        return _unescape(self._word(">"))

    def _end_tag(self) -> None:
        begin = self.at
        self.at += 2
        name = self._word(">").lower()
        self._skip_spaces()
        if self.at >= len(self.source) or self.source[self.at] != ">":
            raise self._error("Unclosed end tag", begin)
        self.at += 1
        if not self.open:
            raise self._error("Unexpected end tag", begin)
        tag = self.open.pop()
        if name and name != tag.name:
            error = self._error("Unmatched end tag", begin)
            raise HtmlError(f'{error}, expected "</{tag.name}>", found "</{name}>"')
        language = tag.attributes.get("class", "")
        parent = self.open[-1] if self.open else None
        if (
            tag.name == "code"
            and parent
            and parent.name == "pre"
            and language.startswith("language-")
        ):
            parent.language = language.removeprefix("language-")  # one pre entity, as Telegram
            return
        entity = self._entity(tag)
        if entity and entity["length"] > 0:
            self.entities.append(entity)

    def _entity(self, tag: _OpenTag) -> JSON | None:
        entity: JSON = {
            "type": _TAG_ENTITY_TYPES[tag.name],
            "offset": tag.offset,
            "length": self.length - tag.offset,
        }
        if tag.name == "a":
            if not tag.attributes.get("href"):
                return None
            entity["url"] = tag.attributes["href"]
        elif tag.name == "tg-emoji":
            if not tag.attributes.get("emoji-id"):
                return None
            entity["custom_emoji_id"] = tag.attributes["emoji-id"]
        elif tag.name == "blockquote" and "expandable" in tag.attributes:
            entity["type"] = "expandable_blockquote"
        elif tag.name == "pre" and tag.language:
            entity["language"] = tag.language
        return entity


def parse_html(source: str) -> tuple[str, list[JSON]]:
    """Telegram's HTML parse mode: the plain text and its entities, or ``HtmlError``."""
    return _HtmlParser(source).parse()


def _formatted(text: str, parse_mode: str | None) -> tuple[str, list[JSON]]:
    if not parse_mode:
        return text, []
    mode = parse_mode.lower()
    if mode == "html":
        try:
            return parse_html(text)
        except HtmlError as error:
            raise _bad_request(f"can't parse entities: {error}") from None
    if mode in ("markdown", "markdownv2"):
        return text, []  # accepted but not parsed: see the module docstring
    raise _bad_request("unsupported parse_mode")


def _typed_entities(text: str) -> list[JSON]:
    """The bot_command and mention entities a Telegram client attaches to typed text."""
    found = [
        (kind, match)
        for kind, pattern in (("bot_command", _COMMAND_IN_TEXT), ("mention", _MENTION_IN_TEXT))
        for match in pattern.finditer(text)
    ]
    entities = [
        {
            "type": kind,
            "offset": _utf16_len(text[: match.start()]),
            "length": _utf16_len(match.group()),
        }
        for kind, match in found
    ]
    return sorted(entities, key=lambda entity: entity["offset"])


_BUTTON_LOOKS = frozenset({"text", "style", "icon_custom_emoji_id"})  # not actions


def _validated_markup(markup: Any) -> JSON | None:
    """Checks an inline keyboard the way Telegram refuses the common mistakes."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return markup  # a reply keyboard, ReplyKeyboardRemove or ForceReply
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request(
            'can\'t parse inline keyboard: field "inline_keyboard" must be an Array of Arrays'
        )
    for button in itertools.chain.from_iterable(rows):
        # A button needs a label and one action (callback_data, url, ...) besides it.
        if not (isinstance(button, dict) and button.get("text") and set(button) - _BUTTON_LOOKS):
            raise _bad_request(
                "can't parse inline keyboard button: "
                "Text buttons are unallowed in the inline keyboard"
            )
        data = button.get("callback_data")
        if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES:
            raise _bad_request("BUTTON_DATA_INVALID")
    return markup


def _without_reply(message: JSON) -> JSON:
    """A replied-to message is embedded one level deep only, as Telegram does."""
    return {key: value for key, value in message.items() if key != "reply_to_message"}


def _scope_key(scope: Any) -> str:
    return json.dumps(scope or {"type": "default"}, sort_keys=True)


def _random_id(prefix: str, length: int) -> str:
    return prefix + secrets.token_urlsafe(length)


# -- the server ------------------------------------------------------------------------


class FakeBotAPI:
    """A Telegram Bot API server on 127.0.0.1 holding one bot, its users, chats and updates.

    The control methods are plain calls but wake waiting long polls, so call them from the
    event loop the server runs on (i.e. from the async test itself).
    """

    def __init__(
        self,
        token: str = "123456789:AAFakeTokenOfTheGridbotTestSuite",
        bot_username: str = "gridbot_test_bot",
        bot_first_name: str = "Gridbot",
        *,
        privacy_mode: bool = True,
    ) -> None:
        self.token = token
        self.bot_username = bot_username
        self.privacy_mode = privacy_mode
        self.bot_user: JSON = {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self._users: dict[int, JSON] = {}
        self._chats: dict[int, JSON] = {}
        self._started: set[int] = set()  # users who opened a private chat with the bot
        # Messages are replaced, never mutated, on edit: updates already queued keep the
        # version the user saw, as in Telegram.
        self._messages: dict[tuple[int, int], JSON] = {}
        self._last_message_id: dict[int, int] = defaultdict(int)
        self._sent: list[SentMessage] = []
        self._sent_by_key: dict[tuple[int, int], SentMessage] = {}
        self._files: dict[str, _StoredFile] = {}
        self._updates: list[JSON] = []  # unconfirmed, oldest first
        # Telegram's update ids are large and keep growing; don't let tests assume 1, 2, 3.
        self._update_ids = itertools.count(100_000_000 + secrets.randbelow(800_000_000))
        self._allowed_updates: frozenset[str] | None = None  # None: every type we produce
        self._poll_generation = 0  # a new getUpdates terminates the previous long poll
        self._open_callbacks: set[str] = set()
        self._callback_ids = itertools.count(4_000_000_000_000_000_000 + secrets.randbelow(10**18))
        self._answered: list[JSON] = []
        self._commands: dict[tuple[str, str], list[JSON]] = {}
        self._pinned: dict[int, int] = {}
        # Groups where the bot is an admin with the "delete messages" right.
        self._may_delete: set[int] = set()
        self.deleted: list[tuple[int, int]] = []
        self._webhook_url = ""
        self._webhook_connections = 40
        self._faults: defaultdict[str, deque[ApiError]] = defaultdict(deque)
        self._calls: list[Call] = []
        self._changed = _Signal()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        handlers: dict[str, Callable[[_Params], Awaitable[Any]]] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "answerCallbackQuery": self._answer_callback_query,
            "sendDocument": self._send_document,
            "getFile": self._get_file,
            "pinChatMessage": self._pin_chat_message,
            "deleteMessage": self._delete_message,
            "sendChatAction": self._send_chat_action,
        }
        # Bot API method names are case-insensitive.
        self._methods = {name.lower(): (name, handler) for name, handler in handlers.items()}

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Serves on a free port, or on the previous one after a ``stop()``."""
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_call)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_download)
        # handler_cancellation: a long poll whose client went away must not linger.
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=5.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self._port or 0).start()
        self._runner, self._port = runner, runner.addresses[0][1]
        self._closing = False

    async def stop(self) -> None:
        """Stops serving but keeps every chat, message and update: ``start()`` again plays
        a Telegram outage and its end."""
        if self._runner is None:
            return
        self._closing = True
        self._changed.notify()  # long polls answer now instead of holding up the shutdown
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> FakeBotAPI:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def root_url(self) -> str:
        """The server root, e.g. for ``GRIDBOT_TELEGRAM_API_URL``."""
        if self._port is None:
            raise RuntimeError("FakeBotAPI is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url()``: PTB appends the token."""
        return f"{self.root_url}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``ApplicationBuilder().base_file_url()``: PTB appends the token."""
        return f"{self.root_url}/file/bot"

    # -- control API: the world around the bot --------------------------------------------

    def add_user(
        self,
        user_id: int,
        first_name: str,
        username: str | None = None,
        *,
        language_code: str | None = None,
        started: bool = False,
    ) -> JSON:
        """Creates (or updates) a user and their private chat with the bot. ``started``
        marks them as having opened that chat, so the bot may write to them."""
        if user_id <= 0:
            raise ValueError("user ids are positive")
        user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
        chat: JSON = {"id": user_id, "type": "private", "first_name": first_name}
        if username:
            user["username"] = chat["username"] = username
        if language_code:
            user["language_code"] = language_code
        self._users[user_id], self._chats[user_id] = user, chat
        if started:
            self._started.add(user_id)
        return user

    def add_group(self, chat_id: int, title: str) -> JSON:
        """Creates a group with the bot in it: a supergroup for ids like -100xxxxxxxxxx."""
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        kind = "supergroup" if chat_id < _SUPERGROUP_IDS_BELOW else "group"
        self._chats[chat_id] = {"id": chat_id, "type": kind, "title": title}
        return self._chats[chat_id]

    def user_says(
        self, user_id: int, chat_id: int, text: str, reply_to: int | None = None
    ) -> int | None:
        """A user sends ``text`` (replying to message ``reply_to`` of that chat). Returns the
        update id, or None when the bot does not get the message (group privacy mode, or a
        type excluded by ``allowed_updates``)."""
        user, chat = self._speaker(user_id, chat_id)
        message = self._user_message(
            user, chat, reply_to, text=text, entities=_typed_entities(text)
        )
        return self._deliver(message, text)

    def user_sends_document(
        self,
        user_id: int,
        chat_id: int,
        filename: str,
        data: bytes,
        caption: str | None = None,
    ) -> int | None:
        """A user sends a file (e.g. a CSV register); same return value as ``user_says``."""
        user, chat = self._speaker(user_id, chat_id)
        stored = self._store_file(filename, data, None)
        message = self._user_message(
            user,
            chat,
            None,
            document=stored.document(),
            caption=caption,
            caption_entities=_typed_entities(caption or ""),
        )
        return self._deliver(message, caption or "")

    def user_presses(
        self, user_id: int, message: SentMessage | tuple[int, int], callback_data: str
    ) -> str:
        """A user presses the inline button carrying ``callback_data`` on a bot message,
        given as its ``sent()`` record or as ``(chat_id, message_id)``. Returns the
        callback query id."""
        chat_id, message_id = (
            message if isinstance(message, tuple) else (message["chat_id"], message["message_id"])
        )
        user = self._user(user_id)
        current = self._messages.get((chat_id, message_id))
        if current is None:
            raise ValueError(f"no message {message_id} in chat {chat_id}")
        if current["chat"]["type"] == "private" and chat_id != user_id:
            raise ValueError(f"user {user_id} cannot see the private chat {chat_id}")
        rows = current.get("reply_markup", {}).get("inline_keyboard", [])
        if not any(b.get("callback_data") == callback_data for row in rows for b in row):
            raise ValueError(f"message {message_id} has no button with data {callback_data!r}")
        query_id = str(next(self._callback_ids))
        self._open_callbacks.add(query_id)
        query = {
            "id": query_id,
            "from": user,
            "message": current,
            # Opaque but stable per chat, like Telegram's.
            "chat_instance": str(chat_id * 1_000_003 % 2**63),
            "data": callback_data,
        }
        self._enqueue("callback_query", query)
        return query_id

    def fail_next(
        self,
        method: str,
        n: int = 1,
        status: int = HTTPStatus.TOO_MANY_REQUESTS,
        retry_after: int = 1,
        description: str | None = None,
    ) -> None:
        """The next ``n`` calls of ``method`` fail with ``status``: 429 carries
        ``retry_after`` as Telegram's flood control does; others (502, 500, 403, ...) get the
        status phrase or ``description``."""
        if method.lower() not in self._methods:
            raise ValueError(f"FakeBotAPI does not implement {method}")
        name = self._methods[method.lower()][0]
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            error = ApiError(
                status,
                description or f"Too Many Requests: retry after {retry_after}",
                {"retry_after": retry_after},
            )
        else:
            error = ApiError(status, description or HTTPStatus(status).phrase)
        self._faults[name].extend([error] * n)

    def clear_faults(self) -> None:
        """Drops every fault still waiting to be injected."""
        self._faults.clear()

    # -- control API: what the bot did ----------------------------------------------------

    def sent(self, chat_id: int | None = None) -> list[SentMessage]:
        """Messages the bot sent, oldest first (all chats, or one)."""
        return [m for m in self._sent if chat_id is None or m["chat_id"] == chat_id]

    @property
    def answered_callbacks(self) -> list[JSON]:
        """answerCallbackQuery calls: callback_query_id, text, show_alert, url, cache_time."""
        return list(self._answered)

    def calls(self, method: str | None = None) -> list[Call]:
        """Every answered call (or those of one method), oldest first."""
        return [c for c in self._calls if method is None or c.method.lower() == method.lower()]

    def pending_updates(self) -> int:
        """Updates not yet confirmed by a getUpdates ``offset``."""
        return len(self._updates)

    def commands(
        self, scope: Mapping[str, Any] | None = None, language_code: str = ""
    ) -> list[JSON]:
        """The commands set for ``scope`` (default scope if None) and language."""
        return list(self._commands.get((_scope_key(scope), language_code), []))

    def command_scopes(self) -> list[tuple[JSON, str]]:
        """Every (scope, language_code) that has commands set."""
        return [(json.loads(scope), language) for scope, language in self._commands]

    def grant_delete(self, chat_id: int) -> None:
        """Makes the bot an admin of ``chat_id`` with the right to delete messages."""
        self._may_delete.add(chat_id)

    def pinned(self, chat_id: int) -> int | None:
        """The id of the message the bot pinned last in ``chat_id``."""
        return self._pinned.get(chat_id)

    @property
    def webhook_url(self) -> str:
        return self._webhook_url

    # The deadline is part of these helpers' contract, hence a `timeout` argument.
    async def wait_until(
        self,
        condition: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
        what: str = "condition",
    ) -> None:
        """Waits until ``condition()`` holds; it is re-checked after every change."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"{what} not met within {timeout} s") from None

    async def wait_for_sent(
        self,
        until: int | Callable[[SentMessage], bool] = 1,
        *,
        chat_id: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[SentMessage]:
        """Waits until the bot has sent ``until`` messages (to ``chat_id`` if given) and
        returns them all, or until some message satisfies the predicate ``until`` (edits
        count) and returns the matching ones."""

        def matching() -> list[SentMessage]:
            sent = self.sent(chat_id)
            return sent if isinstance(until, int) else [m for m in sent if until(m)]

        def done() -> bool:
            found = matching()
            return len(found) >= until if isinstance(until, int) else bool(found)

        try:
            await self.wait_until(done, timeout)
        except TimeoutError:
            texts = [(m["chat_id"], m["text"] or m["document_name"]) for m in self.sent()]
            raise TimeoutError(f"the bot did not send what was awaited; it sent {texts}") from None
        return matching()

    # -- control helpers ------------------------------------------------------------------

    def _user(self, user_id: int) -> JSON:
        if user_id not in self._users:
            raise ValueError(f"unknown user {user_id}: call add_user() first")
        return self._users[user_id]

    def _speaker(self, user_id: int, chat_id: int) -> tuple[JSON, JSON]:
        user = self._user(user_id)
        chat = self._chats.get(chat_id)
        if chat is None:
            raise ValueError(f"unknown chat {chat_id}: call add_group() first")
        if chat["type"] == "private":
            if chat_id != user_id:
                raise ValueError("a user talks to the bot in the private chat with their own id")
            self._started.add(user_id)
        return user, chat

    def _next_message_id(self, chat_id: int) -> int:
        self._last_message_id[chat_id] += 1
        return self._last_message_id[chat_id]

    def _user_message(self, user: JSON, chat: JSON, reply_to: int | None, **content: Any) -> JSON:
        message: JSON = {
            "message_id": self._next_message_id(chat["id"]),
            "from": user,
            "chat": chat,
            "date": int(time.time()),
        }
        message.update({key: value for key, value in content.items() if value})  # no empty fields
        if reply_to is not None:
            replied = self._messages.get((chat["id"], reply_to))
            if replied is None:
                raise ValueError(f"no message {reply_to} in chat {chat['id']} to reply to")
            message["reply_to_message"] = _without_reply(replied)
        self._messages[(chat["id"], message["message_id"])] = message
        return message

    def _bot_sees(self, message: JSON, body: str) -> bool:
        """Privacy mode: in groups the bot gets only commands (not those addressed to other
        bots), mentions of itself and replies to its own messages."""
        if message["chat"]["type"] == "private" or not self.privacy_mode:
            return True
        replied = message.get("reply_to_message")
        if replied and replied["from"]["id"] == self.bot_user["id"]:
            return True
        if command := _LEADING_COMMAND.match(body):
            addressee = command.group(1)
            return addressee is None or addressee.lower() == self.bot_username.lower()
        mentions = {m.group().lower() for m in _MENTION_IN_TEXT.finditer(body)}
        return f"@{self.bot_username.lower()}" in mentions

    def _deliver(self, message: JSON, body: str) -> int | None:
        return self._enqueue("message", message) if self._bot_sees(message, body) else None

    def _enqueue(self, kind: str, payload: JSON) -> int | None:
        if self._allowed_updates is not None and kind not in self._allowed_updates:
            return None
        update_id = next(self._update_ids)
        self._updates.append({"update_id": update_id, kind: payload})
        self._changed.notify()
        return update_id

    def _store_file(self, filename: str, data: bytes, mime_type: str | None) -> _StoredFile:
        suffix = PurePosixPath(filename).suffix
        stored = _StoredFile(
            file_id=_random_id("BQACAgIAAxkBAAI", 24),
            file_unique_id=_random_id("AgAD", 8),
            file_path=f"documents/file_{len(self._files)}{suffix}",
            file_name=filename,
            mime_type=mime_type or mimetypes.guess_type(filename)[0] or "application/octet-stream",
            data=data,
        )
        self._files[stored.file_id] = stored
        return stored

    # -- HTTP -----------------------------------------------------------------------------

    async def _handle_call(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        name = request.match_info["method"]
        params = _Params({}, {})
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(HTTPStatus.UNAUTHORIZED, "Unauthorized")
            entry = self._methods.get(name.lower())
            if entry is None:
                _log.warning("FakeBotAPI does not implement %s: answering 404 like Telegram", name)
                raise ApiError(HTTPStatus.NOT_FOUND, "Not Found")
            name, handler = entry
            params = await _read_params(request)
            if self._faults[name]:
                raise self._faults[name].popleft()
            result = await handler(params)
        except ApiError as error:
            status, body = error.status, error.body()
        else:
            status, body = HTTPStatus.OK, {"ok": True, "result": result}
        self._calls.append(Call(name, arrived, params.for_log(), status))
        self._changed.notify()
        return web.json_response(body, status=status)

    async def _handle_download(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        if request.match_info["token"] == self.token:
            for stored in self._files.values():
                if stored.file_path == path:
                    return web.Response(body=stored.data, content_type=stored.mime_type)
        return web.json_response(ApiError(HTTPStatus.NOT_FOUND, "Not Found").body(), status=404)

    # -- Bot API methods ------------------------------------------------------------------

    async def _get_me(self, params: _Params) -> JSON:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
        }

    async def _get_updates(self, params: _Params) -> list[JSON]:
        if self._webhook_url:
            raise ApiError(
                HTTPStatus.CONFLICT,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.get_int("offset") or 0
        limit = min(max(params.get_int("limit") or 100, 1), 100)
        timeout = max(params.get_float("timeout") or 0.0, 0.0)
        if params.has("allowed_updates"):  # a setting that lasts until changed
            self._allowed_updates = frozenset(params.get_json("allowed_updates") or ()) or None
        # Confirming: a positive offset forgets every earlier update; a negative one keeps
        # only the last -offset updates.
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        self._poll_generation += 1
        generation = self._poll_generation
        self._changed.notify()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not (self._updates or self._closing or generation != self._poll_generation):
                    await self._changed.wait()
        if generation != self._poll_generation:
            raise ApiError(
                HTTPStatus.CONFLICT,
                "Conflict: terminated by other getUpdates request; "
                "make sure that only one bot instance is running",
            )
        return self._updates[:limit]

    async def _set_webhook(self, params: _Params) -> bool:
        url = params.get_str("url") or ""
        if url and not url.startswith("https://"):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if params.get_bool("drop_pending_updates"):
            self._updates.clear()
        self._webhook_url = url
        self._webhook_connections = params.get_int("max_connections") or 40
        return True

    async def _delete_webhook(self, params: _Params) -> bool:
        if params.get_bool("drop_pending_updates"):
            self._updates.clear()
        self._webhook_url = ""
        return True

    async def _get_webhook_info(self, params: _Params) -> JSON:
        return {
            "url": self._webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
            **({"max_connections": self._webhook_connections} if self._webhook_url else {}),
        }

    def _commands_key(self, params: _Params) -> tuple[str, str]:
        return _scope_key(params.get_json("scope")), params.get_str("language_code") or ""

    async def _set_my_commands(self, params: _Params) -> bool:
        commands = params.get_json("commands") or []
        if not isinstance(commands, list):
            raise _bad_request("can't parse commands JSON object")
        for command in commands:
            if not _BOT_COMMAND_NAME.fullmatch(str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not command.get("description"):
                raise _bad_request("command description must be non-empty")
        key = self._commands_key(params)
        if commands:
            self._commands[key] = [
                {"command": c["command"], "description": c["description"]} for c in commands
            ]
        else:
            self._commands.pop(key, None)
        return True

    async def _get_my_commands(self, params: _Params) -> list[JSON]:
        return list(self._commands.get(self._commands_key(params), []))

    async def _delete_my_commands(self, params: _Params) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True

    def _chat(self, params: _Params) -> JSON:
        """The chat named by ``chat_id``; usernames ("@name") resolve to no chat here."""
        raw = params.get_str("chat_id")
        if raw is None:
            raise _bad_request("chat_id is empty")
        try:
            chat = self._chats.get(int(raw))
        except ValueError:
            chat = None
        if chat is None:
            raise _bad_request("chat not found")
        return chat

    def _writable_chat(self, params: _Params) -> JSON:
        chat = self._chat(params)
        if chat["type"] == "private" and chat["id"] not in self._started:
            raise ApiError(
                HTTPStatus.FORBIDDEN, "Forbidden: bot can't initiate conversation with a user"
            )
        return chat

    def _replied_message(self, chat_id: int, params: _Params) -> JSON | None:
        """The message replied to, looked up in the same chat (cross-chat replies are not
        modelled)."""
        reply = params.get_json("reply_parameters") or {}
        message_id = reply.get("message_id") or params.get_int("reply_to_message_id")
        if not message_id:
            return None
        replied = self._messages.get((chat_id, int(message_id)))
        if replied is None:
            if reply.get("allow_sending_without_reply") or params.get_bool(
                "allow_sending_without_reply"
            ):
                return None
            raise _bad_request("message to be replied not found")
        return _without_reply(replied)

    def _bot_message(
        self, chat: JSON, params: _Params, markup: JSON | None, **content: Any
    ) -> JSON:
        message: JSON = {
            "message_id": self._next_message_id(chat["id"]),
            "from": self.bot_user,
            "chat": chat,
            "date": int(time.time()),
        }
        if replied := self._replied_message(chat["id"], params):
            message["reply_to_message"] = replied
        message.update({key: value for key, value in content.items() if value})
        if markup and "inline_keyboard" in markup:  # only inline keyboards belong to a message
            message["reply_markup"] = markup
        self._messages[(chat["id"], message["message_id"])] = message
        return message

    def _record(self, message: JSON, method: str, params: _Params, **fields: Any) -> None:
        record = SentMessage(
            chat_id=message["chat"]["id"],
            message_id=message["message_id"],
            method=method,
            text=fields.get("text"),
            parse_mode=params.get_str("parse_mode"),
            reply_markup=message.get("reply_markup"),
            caption=fields.get("caption"),
            document_name=fields.get("document_name"),
            document_bytes=fields.get("document_bytes"),
            at=time.monotonic(),
            message=message,
        )
        self._sent.append(record)
        self._sent_by_key[(record["chat_id"], record["message_id"])] = record

    def _text(self, params: _Params) -> tuple[str, list[JSON]]:
        raw = params.get_str("text") or ""
        text, entities = _formatted(raw, params.get_str("parse_mode"))
        if not text.strip():
            raise _bad_request("message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        return text, entities

    async def _send_message(self, params: _Params) -> JSON:
        chat = self._writable_chat(params)
        text, entities = self._text(params)
        markup = _validated_markup(params.get_json("reply_markup"))
        message = self._bot_message(chat, params, markup, text=text, entities=entities)
        self._record(message, "sendMessage", params, text=params.get_str("text"))
        return message

    async def _send_document(self, params: _Params) -> JSON:
        chat = self._writable_chat(params)
        caption = params.get_str("caption")
        caption_text, caption_entities = _formatted(caption or "", params.get_str("parse_mode"))
        if len(caption_text) > MAX_CAPTION_LENGTH:
            raise _bad_request("message caption is too long")
        markup = _validated_markup(params.get_json("reply_markup"))
        upload = params.files.get("document")
        # Without an upload it is a file_id to resend; Telegram would also fetch URLs.
        known = self._files.get(params.get_str("document") or "")
        if upload is not None:
            if not upload.data:
                raise _bad_request("file must be non-empty")
            stored = self._store_file(upload.filename, upload.data, upload.content_type)
        elif known is not None:
            stored = known
        else:
            raise _bad_request("wrong file identifier/HTTP URL specified")
        message = self._bot_message(
            chat,
            params,
            markup,
            document=stored.document(),
            caption=caption_text,
            caption_entities=caption_entities,
        )
        self._record(
            message,
            "sendDocument",
            params,
            caption=caption,
            document_name=stored.file_name,
            document_bytes=stored.data,
        )
        return message

    def _own_message(self, params: _Params) -> JSON:
        chat = self._chat(params)
        message = self._messages.get((chat["id"], params.required_int("message_id")))
        if message is None:
            raise _bad_request("message to edit not found")
        if message["from"]["id"] != self.bot_user["id"]:
            raise _bad_request("message can't be edited")
        return message

    def _replace(self, old: JSON, params: _Params, markup: JSON | None, **content: Any) -> JSON:
        """Applies an edit. Like Telegram, an edit without ``reply_markup`` removes the
        inline keyboard, and an edit that changes nothing is refused."""
        new = {k: v for k, v in old.items() if k not in ("edit_date", "reply_markup", *content)}
        new.update({key: value for key, value in content.items() if value})
        if markup and "inline_keyboard" in markup:
            new["reply_markup"] = markup
        if new == {k: v for k, v in old.items() if k != "edit_date"}:
            raise _bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        new["edit_date"] = int(time.time())
        key = (new["chat"]["id"], new["message_id"])
        self._messages[key] = new
        record = self._sent_by_key[key]
        record["reply_markup"] = new.get("reply_markup")
        record["message"] = new
        if "text" in content:
            record["text"] = params.get_str("text")
            record["parse_mode"] = params.get_str("parse_mode")
        return new

    async def _edit_message_text(self, params: _Params) -> JSON:
        message = self._own_message(params)
        if "text" not in message:
            raise _bad_request("there is no text in the message to edit")
        text, entities = self._text(params)
        markup = _validated_markup(params.get_json("reply_markup"))
        return self._replace(message, params, markup, text=text, entities=entities)

    async def _edit_message_reply_markup(self, params: _Params) -> JSON:
        message = self._own_message(params)
        return self._replace(message, params, _validated_markup(params.get_json("reply_markup")))

    async def _answer_callback_query(self, params: _Params) -> bool:
        query_id = params.get_str("callback_query_id") or ""
        if query_id not in self._open_callbacks:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        self._open_callbacks.remove(query_id)
        self._answered.append(
            {
                "callback_query_id": query_id,
                "text": params.get_str("text"),
                "show_alert": params.get_bool("show_alert"),
                "url": params.get_str("url"),
                "cache_time": params.get_int("cache_time") or 0,
            }
        )
        return True

    async def _get_file(self, params: _Params) -> JSON:
        stored = self._files.get(params.get_str("file_id") or "")
        if stored is None:
            raise _bad_request("invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD_BYTES:
            raise _bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }

    async def _pin_chat_message(self, params: _Params) -> bool:
        chat = self._chat(params)
        message_id = params.required_int("message_id")
        if (chat["id"], message_id) not in self._messages:
            raise _bad_request("message to pin not found")
        self._pinned[chat["id"]] = message_id
        return True

    async def _delete_message(self, params: _Params) -> bool:
        chat = self._chat(params)
        message_id = params.required_int("message_id")
        if (chat["id"], message_id) not in self._messages:
            raise _bad_request("message to delete not found")
        if chat["type"] != "private" and chat["id"] not in self._may_delete:
            raise _bad_request("message can't be deleted")
        del self._messages[(chat["id"], message_id)]
        self.deleted.append((chat["id"], message_id))
        return True

    async def _send_chat_action(self, params: _Params) -> bool:
        self._writable_chat(params)
        if params.get_str("action") not in _CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True


@pytest_asyncio.fixture
async def botapi() -> AsyncIterator[FakeBotAPI]:
    """A started FakeBotAPI, fresh for each test."""
    async with FakeBotAPI() as server:
        yield server

"""The transport-neutral message model and the interface every transport implements."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.app import App


@dataclass(frozen=True)
class Attachment:
    name: str
    data: bytes


@dataclass(frozen=True)
class Incoming:
    """A message from a person in a chat."""

    transport: str
    chat: str
    sender: str
    text: str
    is_direct: bool = False
    sender_name: str = ""
    sender_username: str | None = None
    chat_title: str = ""
    attachments: tuple[Attachment, ...] = ()
    message_id: str | None = None
    reply_to: str | None = None
    # Set by transports that may redeliver ('telegram:<update_id>'): handled at most once.
    dedupe_key: str | None = None


@dataclass(frozen=True)
class Outgoing:
    """A message to send; `buttons` are [{'label', 'command', 'emoji'}]."""

    text: str
    buttons: tuple[dict[str, str], ...] = ()
    file_name: str | None = None
    file_data: bytes | None = None
    pin: bool = False
    reply_to: str | None = None
    key: str = ""  # stable per message: lets a transport make retries idempotent


@dataclass
class Capabilities:
    buttons: bool = False
    reactions: bool = False
    files: bool = False
    edit: bool = False
    pin: bool = False
    delete: bool = False  # may remove a person's message from a group (given the rights)
    max_length: int = 65_536


class CannotDeliver(Exception):
    """Permanent failure to deliver (e.g. Telegram's 403 before the person wrote to the bot)."""


class RateLimited(Exception):
    """The server refused a send for now (Matrix's M_LIMIT_EXCEEDED) and nothing of the
    message went out: the outbox waits `retry_after` seconds, then sends what waits for that
    chat merged."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:.1f} s")
        self.retry_after = retry_after


@dataclass
class Sent:
    """Where a delivered message landed, so buttons and reactions on it can be traced back."""

    chat: str
    message_ids: list[str] = field(default_factory=list)


class Budget:
    """A sending allowance that holds in EVERY rolling window, not just on average: a token
    bucket of `capacity` refilled at `per_second`. Any window of W seconds sees at most
    capacity + per_second × W sends, so e.g. capacity 10 and 10 a minute keep a group within
    20 messages in any minute while the first 10 of a burst still go out at once.

    Shared by every chat it covers (Matrix's rc_message is per account, Telegram's 20 a
    minute per group). The outbox waits for a token before each send and, when it had to
    wait, merges what piled up for that chat meanwhile into one message.
    """

    def __init__(self, capacity: float, per_second: float, clock=time.monotonic) -> None:
        self.capacity = capacity
        self.per_second = per_second
        self._clock = clock
        self._tokens = float(capacity)
        self._at = clock()

    def available(self) -> float:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        return self._tokens

    def delay(self, cost: float) -> float:
        """Seconds until `cost` sends are allowed (0: now). A cost beyond the capacity waits
        for a full bucket."""
        missing = min(cost, self.capacity) - self.available()
        return max(0.0, missing / self.per_second) if missing > 0 else 0.0

    def spend(self, cost: float) -> None:
        self.available()
        self._tokens -= cost


class Transport(Protocol):
    name: str
    capabilities: Capabilities
    builtin_admins: frozenset[str]  # user ids that are admins without configuration

    def mention(self, word: str) -> tuple[str | None, str | None]:
        """`@word` as this transport names people: (user id, username), either may be None
        (Errbot's `build_identifier`: the core never reads IDs itself)."""
        ...

    # Optional: `budget(chat) -> Budget | None`, the rate allowance a send to `chat` draws
    # on (None or absent: unlimited); `calls(message) -> int`, what a message costs in it;
    # `async stop_taking()`, stop reading new messages and finish the one in hand (its offset
    # or sync token saved) while sending still works: `App.stop` calls it on every transport
    # before it waits for jobs and the outbox, then calls `stop`.

    async def start(self, app: App) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, chat: str, message: Outgoing) -> Sent: ...

    async def send_direct(self, user: str, dm_chat: str | None, message: Outgoing) -> Sent: ...

    async def delete(self, chat: str, message_id: str) -> bool:
        """Removes a person's message from a group; False where the bot has no right to."""
        ...


class BaseTransport:
    """Defaults for a transport's identity and abilities, for transports to build on."""

    name = "base"
    capabilities = Capabilities()
    builtin_admins: frozenset[str] = frozenset()

    def mention(self, word: str) -> tuple[str | None, str | None]:
        return None, word.lstrip("@").lower()

    async def delete(self, chat: str, message_id: str) -> bool:
        return False


def split_text(text: str, limit: int) -> list[str]:
    """Splits a long message at blank lines (section boundaries), then lines, then anywhere."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for block in text.split("\n\n"):
        candidate = f"{current}\n\n{block}" if current else block
        if len(candidate) <= limit:
            current = candidate
            continue
        if current:
            parts.append(current)
        if len(block) <= limit:
            current = block
            continue
        current = ""
        for line in block.split("\n"):
            candidate = f"{current}\n{line}" if current else line
            if len(candidate) <= limit:
                current = candidate
                continue
            if current:
                parts.append(current)
            while len(line) > limit:
                parts.append(line[:limit])
                line = line[limit:]
            current = line
    if current:
        parts.append(current)
    return parts

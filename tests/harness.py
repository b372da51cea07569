"""Drives the bot through the console transport in-process, as a person typing would.

    bot = ConsoleBot(tmp_path)          # SQLite in tmp_path, manual clock
    await bot.start()
    out = await bot.say(":in g1chat", "/join worker")
    assert out.texts("g1chat") == [...]
    await bot.restart()                 # same database, a new App (as after a crash)
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from bot.app import App
from bot.config import Config
from bot.transports.base import Incoming
from bot.transports.console import ConsoleTransport, first_lines_and_clock

BLOCK = re.compile(r"^\[(?P<chat>[^\]\s]+)\](?: file: (?P<file>.+))?$")


@dataclass
class Block:
    chat: str
    text: str
    file: str | None = None


class Output(list[Block]):
    def texts(self, chat: str | None = None) -> list[str]:
        return [b.text for b in self if chat is None or b.chat == chat]

    def text(self, chat: str | None = None) -> str:
        """All text sent (to `chat`), joined: for `in` checks."""
        return "\n\n".join(self.texts(chat))

    def chats(self) -> list[str]:
        return [b.chat for b in self]


def parse_blocks(raw: str) -> Output:
    """Splits console output into blocks: `[chat]`, text lines, blank line."""
    out = Output()
    lines = raw.split("\n")
    i = 0
    while i < len(lines):
        match = BLOCK.match(lines[i])
        if not match:
            i += 1
            continue
        if match["file"]:
            out.append(Block(chat=match["chat"], text="", file=match["file"]))
            i += 1
            continue
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i] == ""
            and (i + 1 >= len(lines) or BLOCK.match(lines[i + 1]) or lines[i + 1] == "")
        ):
            body.append(lines[i])
            i += 1
        out.append(Block(chat=match["chat"], text="\n".join(body)))
    return out


class ConsoleBot:
    def __init__(self, workdir: Path, *, database_url: str = "", admins: tuple[str, ...] = (),
                 start: str = "2026-02-10T09:00", lang: str = "zh") -> None:
        self.workdir = workdir
        self.config = Config(data_dir=workdir, database_url=database_url, admins=admins, lang=lang)
        self.start_at = start
        self.stdout = io.StringIO()
        self.app: App | None = None
        self.console: ConsoleTransport | None = None

    async def start(self, clock: str | None = None) -> Output:
        """Starts the bot; `clock` (or the constructor's `start`) is the first `:clock` line."""
        first, manual = first_lines_and_clock(
            io.StringIO(f":clock {clock or self.start_at}\n"), self.config.tz
        )
        self.console = ConsoleTransport(
            stdin=io.StringIO(""), stdout=self.stdout, workdir=self.workdir
        )
        self.app = App(self.config, clock=manual)
        mark = self.stdout.tell()
        await self.app.start([self.console])
        return parse_blocks(self.stdout.getvalue()[mark:])

    async def say(self, *lines: str) -> Output:
        """Feeds lines (messages or `:directives`); returns what the bot sent meanwhile."""
        mark = self.stdout.tell()
        for line in lines:
            for part in line.split("\n") if line.startswith(":") else [line]:
                await self.console.feed(part)
        return parse_blocks(self.stdout.getvalue()[mark:])

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None

    async def restart(self, clock: str | None = None) -> Output:
        """A new App on the same database, as after a crash or an upgrade; the console keeps
        who is speaking where."""
        state = (self.console.user, self.console.user_name, self.console.chat, self.console.direct)
        now = self.app.clock.now().isoformat() if self.app else None
        await self.stop()
        out = await self.start(clock or now)
        self.console.user, self.console.user_name, self.console.chat, self.console.direct = state
        return out


def grid_chat_message(user: str, text: str, message_id: str) -> Incoming:
    """What `user` types in g1chat (setup_community's grid chat), as the console hands it to
    the app: for tests that send several messages at once with `app.handle`."""
    return Incoming(
        transport="console", chat="g1chat", sender=user, text=text, sender_name=user,
        sender_username=user, chat_title="g1chat", message_id=message_id,
    )


async def setup_community(bot: ConsoleBot) -> Output:
    """The common starting point: a community with grids g1 and g2, 24 households in g1
    (building 3), a leader `lead` and members `wang` (worker) and `li` (volunteer) in g1."""
    return await bot.say(
        ":as admin Admin", ":in hq", "/community 阳光社区",
        "/grid add g1 一网格", "/grid add g2 二网格",
        ":in g1chat", "/grid link g1",
        "/household add 3 units=2 floors=6 rooms=2",
        "/role @lead leader",
        ":in g2chat", "/grid link g2",
        ":in g1chat",
        ":as lead Lead", "/join cadre party unit=街道办",
        ":as wang Wang", "/join worker",
        ":as li Li", "/join",
        ":as admin Admin",
    )

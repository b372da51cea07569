"""The console transport: a chat in the terminal, for trying the bot and for scripted tests.

Lines starting with `:` are directives (README, "A first session"); any other
line is a message from the current user in the current chat. Every message the bot sends
prints as a block: `[<chat>]`, the text, a blank line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from zoneinfo import ZoneInfo

from bot.args import parse_duration
from bot.clock import ManualClock
from bot.errors import ArgError
from bot.transports.base import Attachment, Capabilities, Incoming, Outgoing, Sent

if TYPE_CHECKING:
    from bot.app import App


def parse_clock(text: str, tz: str) -> datetime:
    """`2026-02-10T19:59` (in the default time zone unless it carries an offset)."""
    when = datetime.fromisoformat(text.strip())
    return when if when.tzinfo else when.replace(tzinfo=ZoneInfo(tz))


def first_lines_and_clock(stdin: TextIO, tz: str) -> tuple[list[str], ManualClock]:
    """When the first line is `:clock`, the clock is set before anything starts, so start-up
    work (a digest missed while down) sees that time. The line read is handed back."""
    if stdin.isatty():
        return [], ManualClock()
    first = stdin.readline()
    if first.startswith(":clock "):
        try:
            return [], ManualClock(parse_clock(first[len(":clock ") :], tz))
        except ValueError:
            pass
    return [first], ManualClock()


class ConsoleTransport:
    name = "console"
    capabilities = Capabilities(files=True)
    builtin_admins = frozenset({"admin"})  # the console's `admin` (README, "A first session")
    app: App  # given by `start`

    def mention(self, word: str) -> tuple[str | None, str | None]:
        """`@wang` is the user typed with `:as wang`."""
        name = word.lstrip("@")
        return name, name.lower()

    def __init__(
        self, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, workdir: Path | None = None
    ) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.workdir = workdir or Path.cwd()
        self.user = "admin"
        self.user_name = ""
        self.chat = "hq"
        self.direct = False
        self.attachment: Attachment | None = None
        self._count = 0  # messages typed
        self._sent = 0  # messages printed
        self._run = uuid.uuid4().hex[:8]
        self._stopping = asyncio.Event()  # keeps message ids unique across runs on one database

    async def start(self, app: App) -> None:
        self.app = app

    async def stop(self) -> None:
        pass

    async def run(self, lines: list[str] | None = None) -> None:
        """Reads lines until end of input; `lines` were read already (e.g. a first `:clock`)."""
        for line in lines or ():
            await self.feed(line)
        live = self.stdin.isatty() and isinstance(self.app.clock, ManualClock)
        ticker = asyncio.create_task(self._follow_real_time()) if live else None
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                reading = asyncio.ensure_future(self._readline())
                await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():
                    reading.cancel()
                    break
                line = reading.result()
                if not line:
                    break
                await self.feed(line)  # a line in hand is finished even when asked to stop
        finally:
            stopping.cancel()
            if ticker:
                ticker.cancel()

    def stop_reading(self) -> None:
        """Asks `run` to stop after the line in hand (on SIGTERM or Ctrl-C)."""
        self._stopping.set()

    async def _readline(self) -> str:
        """One line of input, read in a daemon thread: a pending read never holds up exit."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def deliver(result: str | BaseException) -> None:
            if future.done():
                return
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

        def read() -> None:
            try:
                result: str | BaseException = self.stdin.readline()
            except Exception as error:  # e.g. stdin closed under us
                result = error
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(deliver, result)

        threading.Thread(target=read, name="console-stdin", daemon=True).start()
        return await future

    async def feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if not line.strip():
            return
        if line.startswith(":"):
            await self._directive(line[1:])
            return
        attachments = (self.attachment,) if self.attachment else ()
        self.attachment = None
        self._count += 1
        chat = f"dm:{self.user}" if self.direct else self.chat
        await self.app.handle(
            Incoming(
                transport=self.name, chat=chat, sender=self.user, text=line,
                is_direct=self.direct, sender_name=self.user_name or self.user,
                sender_username=self.user, chat_title=chat, attachments=attachments,
                message_id=str(self._count),
            )
        )

    async def _directive(self, text: str) -> None:
        verb, _, rest = text.strip().partition(" ")
        rest = rest.strip()
        try:
            if verb == "as" and rest:
                self.user, _, name = rest.partition(" ")
                self.user_name = name.strip()
            elif verb == "in" and rest:
                self.chat, self.direct = rest, False
            elif verb == "dm":
                self.direct = True
            elif verb == "clock" and rest:
                await self._set_clock(parse_clock(rest, self.app.config.tz))
            elif verb == "wait" and rest:
                await self.app.scheduler.advance_to(self.app.clock.now() + parse_duration(rest))
            elif verb == "attach" and rest:
                data = await asyncio.to_thread(_read_file, rest)
                self.attachment = Attachment(name=os.path.basename(rest), data=data)
            else:
                self._note(f"unknown directive :{text.strip()}"
                           " (use :as :in :dm :clock :wait :attach)")
        except (ArgError, ValueError, OSError) as error:
            self._note(f"bad directive :{text.strip()} ({getattr(error, 'template', error)})")

    async def _set_clock(self, when: datetime) -> None:
        clock = self.app.clock
        if not isinstance(clock, ManualClock):
            self._note(":clock needs the console's manual clock")
        elif when > clock.now():
            await self.app.scheduler.advance_to(when)
        else:
            clock.set(when)

    async def _follow_real_time(self) -> None:
        """Interactive use: the manual clock keeps pace with the wall clock."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(1)
            now = loop.time()
            moved = timedelta(seconds=now - last)
            await self.app.scheduler.advance_to(self.app.clock.now() + moved)
            last = now

    def _note(self, text: str) -> None:
        print(f"console: {text}", file=sys.stderr, flush=True)

    async def send(self, chat: str, message: Outgoing) -> Sent:
        self._print(chat, message)
        self._sent += 1
        return Sent(chat=chat, message_ids=[f"{chat}:{self._run}:{self._sent}"])

    async def send_direct(self, user: str, dm_chat: str | None, message: Outgoing) -> Sent:
        chat = f"dm:{user}"
        self._print(chat, message)
        return Sent(chat=chat)

    async def delete(self, chat: str, message_id: str) -> bool:
        return False  # what was typed in a terminal stays on its screen

    def _print(self, chat: str, message: Outgoing) -> None:
        if message.text:
            self.stdout.write(f"[{chat}]\n{message.text}\n\n")
        if message.file_name:
            (self.workdir / message.file_name).write_bytes(message.file_data or b"")
            self.stdout.write(f"[{chat}] file: {message.file_name}\n\n")
        self.stdout.flush()


def _read_file(path: str) -> bytes:
    return Path(path).expanduser().read_bytes()

"""Command throughput through the full pipeline, against raw durable SQLite inserts and
against a peer, Errbot 6's core, all measured in this run on the same machine.

    python -m bench.throughput [--commands 2000] [--rate 500] [--seconds 2] [--no-peer]

The ratios are what matter (absolute times are noise on shared machines):

- raw: single-row durable SQLite inserts, one transaction each (WAL, synchronous=NORMAL, as
  gridbot runs SQLite);
- gridbot: a realistic mix of what grid chats send in the morning, in four grid chats, each
  from its own member: `/screen <household> ok`, `/checkin K<n> 36.6`, `/errand <text>`,
  `/claim E<n>` (an errand posted before), in turn. The whole pipeline runs for each: dedupe
  (every message carries a key, as from Telegram), speaker and chat, authorise, parse, run,
  audit, render the reply and store it in the outbox, commit, hand it to a transport (one
  that discards it). Measured one command after the other, and with the four chats sending
  side by side;
- latency: the same mix offered at `--rate` commands/s for `--seconds`, spread over the
  chats; each command timed from arrival to its reply being handed to the transport; and
  again at half the rate measured with the chats side by side (a load it can carry);
- the floor: the writes every command makes (dedupe key, the row, audit entry, reply, the
  mark of the reply before) in one transaction through SQLAlchemy alone, with nothing else
  — what the pipeline cannot beat on this machine with this storage layer;
- Errbot: `bench/errbot_peer.py` — a plugin that stores an errand in Errbot's storage and
  replies with its ID, through `errbot.backends.test.TestBot` — run in Errbot's own
  virtualenv (made on first use: GRIDBOT_ERRBOT_VENV, default ~/.cache/gridbot/errbot-venv),
  so its dependencies never touch gridbot's environment.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import bindparam, select, update

from bot.app import App
from bot.clock import ManualClock
from bot.config import Config
from bot.transports.base import BaseTransport, Capabilities, Incoming, Outgoing, Sent
from storage import models

ERRBOT = "errbot==6.2.1"
GRIDS = 4
HERE = Path(__file__).resolve().parent


class NullTransport(BaseTransport):
    name = "console"
    capabilities = Capabilities()
    builtin_admins = frozenset({"admin"})

    def __init__(self) -> None:
        self.sent = 0

    async def start(self, app):
        pass

    async def stop(self):
        pass

    async def send(self, chat: str, message: Outgoing) -> Sent:
        self.sent += 1
        return Sent(chat=chat)

    async def send_direct(self, user, dm_chat, message) -> Sent:
        self.sent += 1
        return Sent(chat=f"dm:{user}")


_keys = itertools.count(1)
KEY_PREFIX = "bench"  # per process, where several share a database


def message(text: str, chat: str, sender: str) -> Incoming:
    return Incoming(transport="console", chat=chat, sender=sender, text=text,
                    sender_username=sender, sender_name=sender,
                    dedupe_key=f"{KEY_PREFIX}:{next(_keys)}")


async def community(workdir: Path, name: str = "throughput", grids: int = GRIDS,
                    url: str = "") -> App:
    """A community with grid chats, households, and a member per grid who watches one key
    person there."""
    app = App(Config(data_dir=workdir / name, database_url=url), clock=ManualClock())
    await app.start([NullTransport()])
    say = app.handle
    await say(message("/community 基准社区", "hq", "admin"))
    for g in range(1, grids + 1):
        await say(message(f"/grid add g{g} {g}网格", "hq", "admin"))
        await say(message(f"/grid link g{g}", f"g{g}chat", "admin"))
        await say(message(f"/household add {g} units=4 floors=10 rooms=4", f"g{g}chat", "admin"))
        await say(message(f"/role @w{g} leader", f"g{g}chat", "admin"))
        await say(message("/join worker", f"g{g}chat", f"w{g}"))
        await say(message(f"/watch add {g}-1-101 张三 密接", f"g{g}chat", f"w{g}"))
    return app


class Mix:
    """The morning's commands, in turn: screen, check in, post an errand, claim one.
    `posted`, if given, holds the numbers of the errands posted (as the replies said), for
    when the community's numbers are shared with others."""

    def __init__(self, grids: list[int] | None = None, posted: list[int] | None = None) -> None:
        self.grids = grids or list(range(1, GRIDS + 1))
        self.posted = posted
        self.n = 0
        self.errands = 0
        self.claimed = 0

    def next(self) -> tuple[str, str, str]:
        self.n += 1
        g = self.grids[self.n % len(self.grids)]
        if self.posted is not None:
            self.errands = len(self.posted)
        kind = (self.n // len(self.grids)) % 4
        unit, room = (self.n // 40) % 4 + 1, self.n % 40
        household = f"{g}-{unit}-{room // 4 + 1}{room % 4 + 1:02d}"  # floor, room
        if kind == 0:
            text = f"/screen {household} ok people=3"
        elif kind == 1:
            text = f"/checkin K{g} 36.6"
        elif kind == 2 or self.claimed >= self.errands:
            self.errands += 1
            text = f"/errand 帮忙买菜送到 {household}"
        else:
            self.claimed += 1
            number = self.posted[self.claimed - 1] if self.posted is not None else self.claimed
            text = f"/claim E{number}"
        return text, f"g{g}chat", f"w{g}"


async def pipeline(workdir: Path, commands: int) -> tuple[float, float]:
    """Commands/s one after the other, and with the grid chats side by side."""
    app = await community(workdir)
    mix = Mix()
    started = time.perf_counter()
    for _ in range(commands):
        await app.handle(message(*mix.next()))
    sequential = commands / (time.perf_counter() - started)

    queues = [[mix.next() for _ in range(commands // GRIDS)] for _ in range(GRIDS)]
    # Each chat's commands in turn (a chat's order matters), the chats side by side.
    by_chat: dict[str, list] = {}
    for item in itertools.chain(*queues):
        by_chat.setdefault(item[1], []).append(item)

    async def chat_sends(items) -> None:
        for item in items:
            await app.handle(message(*item))

    started = time.perf_counter()
    await asyncio.gather(*(chat_sends(items) for items in by_chat.values()))
    parallel = sum(map(len, by_chat.values())) / (time.perf_counter() - started)
    await app.stop()
    return sequential, parallel


async def latency(
    workdir: Path, rate: float, seconds: float, name: str = "latency"
) -> list[float]:
    """The mix offered at `rate` commands/s: each command timed alone, from arrival to its
    reply handed to the transport."""
    app = await community(workdir, name)
    mix = Mix()
    latencies: list[float] = []

    async def timed(item) -> None:
        t0 = time.perf_counter()
        await app.handle(message(*item))
        latencies.append(time.perf_counter() - t0)

    tasks = []
    started = time.perf_counter()
    for i in range(int(rate * seconds)):
        # Arrivals on schedule, whatever the bot is doing (an open loop).
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timed(mix.next())))
    await asyncio.gather(*tasks)
    await app.stop()
    return latencies


async def floor(workdir: Path, commands: int) -> float:
    """What SQLAlchemy alone costs for the writes every command makes, one after the other:
    one transaction (a session, as the pipeline's) holding the message's dedupe key, an
    errand, its audit entry, the reply in the outbox, and the "sent" mark of the reply before
    — Core statements built once, nothing else (no parsing, access rule, rendering or
    delivery). The pipeline cannot be faster than this on this machine."""
    app = await community(workdir, "floor")
    db, now = app.db, app.clock.now()
    async with db.transaction() as session:
        person = await session.scalar(select(models.Person.id).limit(1))
        grid, community_id = (await session.execute(
            select(models.Grid.id, models.Grid.community_id).limit(1))).one()
    table = models.table
    statements = (
        (table(models.ProcessedMessage).insert(), lambda n: {"key": f"floor:{n}", "at": now}),
        (table(models.Errand).insert(), lambda n: {
            "community_id": community_id, "number": 10_000 + n, "grid_id": grid,
            "text": "帮忙买菜", "state": "open", "posted_by_id": person, "posted_at": now}),
        (table(models.AuditEntry).insert(), lambda n: {
            "at": now, "community_id": community_id, "person_id": person,
            "command": "errand", "text": "/errand 帮忙买菜", "refs": [], "changes": []}),
        (table(models.OutboxMessage).insert(), lambda n: {
            "transport": "console", "chat": "g1chat", "text": f"已发布 E{n}", "buttons": [],
            "pin": False, "created_at": now}),
    )
    outbox = table(models.OutboxMessage)
    mark = (update(outbox).where(outbox.c.id == bindparam("row_id"))
            .values(sent_at=bindparam("now")))
    last = None
    started = time.perf_counter()
    for n in range(commands):
        async with db.transaction() as session:
            conn = await session.connection()
            if last is not None:
                await conn.execute(mark, [{"row_id": last, "now": now}])
            for statement, values in statements:
                result = await conn.execute(statement, values(n))
            last = result.inserted_primary_key[0]
    per_second = commands / (time.perf_counter() - started)
    await app.stop()
    return per_second


def raw_sqlite(path: Path, rows: int) -> float:
    """Rows inserted one durable transaction at a time, WAL + synchronous=NORMAL."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE households (id INTEGER PRIMARY KEY, community_id INT, grid_id INT,"
               " code TEXT, building TEXT, created_at TEXT, UNIQUE (community_id, code))")
    started = time.perf_counter()
    for i in range(rows):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO households (community_id, grid_id, code, building, created_at)"
                   " VALUES (1, 1, ?, ?, datetime('now'))", (f"{i}-1-101", str(i)))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return rows / elapsed


def errbot_python(say: Callable[[str], None]) -> Path:
    """Errbot's own virtualenv, made on first use."""
    venv = Path(os.environ.get("GRIDBOT_ERRBOT_VENV")
                or Path.home() / ".cache" / "gridbot" / "errbot-venv")
    python = venv / "bin" / "python"
    ok = python.exists() and subprocess.run(
        [python, "-c", "import errbot.backends.test"], capture_output=True
    ).returncode == 0
    if not ok:
        say(f"installing {ERRBOT} into {venv} (once)…")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        # errbot.backends.test imports pytest.
        subprocess.run([python, "-m", "pip", "install", "-q", ERRBOT, "pytest"], check=True)
    return python


def errbot_peer(commands: int) -> dict:
    python = errbot_python(lambda text: print(text, file=sys.stderr))
    out = subprocess.run(
        [python, HERE / "errbot_peer.py", "--commands", str(commands)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def percentile(values: list[float], share: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * share))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=500.0, help="offered load, commands/s")
    parser.add_argument("--seconds", type=float, default=2.0, help="how long the load is offered")
    parser.add_argument("--no-peer", action="store_true", help="skip Errbot")
    args = parser.parse_args()
    peer = None if args.no_peer else errbot_peer(args.commands)
    with tempfile.TemporaryDirectory() as tmp:
        raw = raw_sqlite(Path(tmp) / "raw.db", args.commands)
        sequential, parallel = asyncio.run(pipeline(Path(tmp), args.commands))
        least = asyncio.run(floor(Path(tmp), args.commands))
        latencies = asyncio.run(latency(Path(tmp), args.rate, args.seconds))
        carried = max(1.0, round(max(sequential, parallel) / 2))
        latencies_carried = asyncio.run(latency(Path(tmp), carried, args.seconds, "carried"))
    best = max(sequential, parallel)
    print(f"raw SQLite durable inserts: {raw:,.0f}/s")
    print(f"gridbot, mixed commands (screen, checkin, errand, claim; {GRIDS} grid chats): "
          f"{sequential:,.0f}/s one after the other, {parallel:,.0f}/s chats side by side")
    print(f"  ratio gridbot/raw: {best / raw:.3f} (1 command = {raw / best:.1f} raw inserts; "
          f"target ≥ 0.05)")
    if peer:
        print(f"Errbot 6.2 core (store an errand, reply with its ID; Shelf storage): "
              f"{peer['per_second']:,.0f}/s pushed at once, "
              f"{peer['sequential_per_second']:,.0f}/s one after the other")
        print(f"  ratio gridbot/Errbot: {best / peer['per_second']:.2f} "
              f"(one after the other: {sequential / peer['sequential_per_second']:.2f}; "
              f"target ≥ 1)")
    print(f"SQLAlchemy alone, one command's writes (one transaction: dedupe key, errand, audit "
          f"entry, reply, the mark of the reply before; Core statements built once): "
          f"{least:,.0f}/s")
    print(f"  gridbot/that floor: {sequential / least:.2f} one after the other"
          + (f"; the floor/Errbot: {least / peer['sequential_per_second']:.2f}" if peer else ""))
    for rate, measured in ((args.rate, latencies), (carried, latencies_carried)):
        p50, p99 = statistics.median(measured) * 1000, percentile(measured, 0.99) * 1000
        print(f"latency at {rate:.0f} commands/s offered for {args.seconds:.0f} s "
              f"({len(measured)} commands, {GRIDS} chats): p50 {p50:.1f} ms, p99 {p99:.1f} ms "
              f"(target p99 < 20 ms at 500/s)")


if __name__ == "__main__":
    main()

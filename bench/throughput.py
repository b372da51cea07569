"""Command throughput through the full pipeline, against raw durable SQLite inserts.

    python -m bench.throughput [--commands 2000] [--rate 100]

Both run in this process on the same disk, side by side; the ratio is what matters
(absolute times are noise on shared machines). The pipeline is: dedupe, resolve speaker and
chat, authorise, parse, run (one household row), audit, render the reply, store it in the
outbox, commit, hand it to a transport that discards it.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bot.app import App
from bot.clock import ManualClock
from bot.config import Config
from bot.transports.base import BaseTransport, Capabilities, Incoming, Outgoing, Sent


class NullTransport(BaseTransport):
    name = "console"
    capabilities = Capabilities()
    builtin_admins = frozenset({"admin"})

    async def start(self, app):
        pass

    async def stop(self):
        pass

    async def send(self, chat: str, message: Outgoing) -> Sent:
        return Sent(chat=chat)

    async def send_direct(self, user, dm_chat, message) -> Sent:
        return Sent(chat=f"dm:{user}")


def message(text: str, chat: str = "g1chat", sender: str = "admin") -> Incoming:
    return Incoming(transport="console", chat=chat, sender=sender, text=text, sender_username=sender)


async def pipeline(workdir: Path, commands: int, rate: float) -> tuple[float, list[float]]:
    app = App(Config(data_dir=workdir), clock=ManualClock())
    await app.start([NullTransport()])
    for text, chat in [("/community 基准社区", "hq"), ("/grid add g1 一网格", "hq"),
                       ("/grid link g1", "g1chat")]:
        await app.handle(message(text, chat))
    started = time.perf_counter()
    for i in range(commands):
        await app.handle(message(f"/household add {i // 1000 + 1}-1-{i % 1000 + 1}"))
    elapsed = time.perf_counter() - started

    # Latency at a fixed offered load: one command every 1/rate seconds, each timed alone.
    latencies: list[float] = []

    async def timed(i: int) -> None:
        t0 = time.perf_counter()
        await app.handle(message(f"/household add 900-2-{i + 1}"))
        latencies.append(time.perf_counter() - t0)

    tasks = []
    for i in range(min(commands, int(rate * 10))):
        tasks.append(asyncio.create_task(timed(i)))
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks)
    await app.stop()
    return commands / elapsed, latencies


def raw_sqlite(path: Path, rows: int) -> float:
    """The same rows inserted one durable transaction at a time, WAL + synchronous=NORMAL."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0, help="offered load, commands/s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = raw_sqlite(Path(tmp) / "raw.db", args.commands)
        piped, latencies = asyncio.run(pipeline(Path(tmp), args.commands, args.rate))
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"raw SQLite durable inserts: {raw:,.0f}/s")
    print(f"commands through the pipeline: {piped:,.0f}/s")
    print(f"ratio pipeline/raw: {piped / raw:.3f} (1 command = {raw / piped:.1f} raw inserts)")
    print(f"latency at {args.rate:.0f} commands/s offered: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
          f"({len(latencies)} commands)")


if __name__ == "__main__":
    main()

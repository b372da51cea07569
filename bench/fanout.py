"""Outbound fan-out against Telegram's limits: 30 messages/s overall, 20 per minute per group.

    python -m bench.fanout [--grids 1000] [--rounds 1] [--burst 40]

The bot runs with the real Telegram transport (python-telegram-bot) against the in-repo fake
Bot API server (tests/servers/botapi.py), on 127.0.0.1 in a process of its own (as Telegram
would be: this process's CPU is the bot's); times come from the server's call log. A
community with `grids` grid chats is set up through the commands, then:

- fan-out: `/announce` in the HQ chat reaches every grid chat (a message and a pin each),
  `rounds` times, a few seconds apart; measured from the moment the command is written to
  the last grid chat's last call: the calls per second achieved (pins count) against the
  30/s Telegram allows, and the most calls in any rolling second; also when the first call
  went out (the command's own time) and, from there, the time to the last call against the
  fastest schedule 30 calls in any rolling second allow: (N - 1) // 30 s. (That is a little
  under N / 30 s, so with few chats the first ratio can pass 1.)
- burst: `burst` errands posted at once in one grid chat; the time until every one is
  answered, and the most messages to that group in any rolling minute against 20 (what
  waits for the group's budget goes out merged). Right after the burst is written, one
  command in another grid chat: its reply time against the same command's when the bot is
  idle (what a throttled group costs everyone else).

The fake server enforces no limit, so what is measured is what the bot would send to
Telegram; above a limit, Telegram answers 429 and the rate limiter pauses every request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.botapi_process import BotAPIProcess
from bot.app import App
from bot.clock import ManualClock
from bot.config import Config
from bot.heap import freeze_startup_objects
from bot.transports.base import BaseTransport, Capabilities, Incoming, Outgoing, Sent
from bot.transports.telegram import TelegramTransport
from tests.servers.botapi import Call

PER_SECOND = 30  # Telegram: messages per second, overall
PER_GROUP_MINUTE = 20  # Telegram: messages per minute to one group
ADMIN, RESIDENT = 7001, 7002
HQ = -1001000000000
FIRST_GRID_CHAT = HQ - 1  # grid chat i is FIRST_GRID_CHAT - i
ROUND_PAUSE = 3.0  # seconds between fan-out rounds, so each starts with the limiter rested
TIMEOUT = 600.0  # seconds: a step taking longer than this has failed
# A fixed manual clock: no scheduled job (the daily digest) fires during the measurement.
START = datetime(2026, 2, 10, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
MESSAGES = ("sendMessage", "sendDocument")


def grid_chat(i: int) -> int:
    return FIRST_GRID_CHAT - i


class Discard(BaseTransport):
    """Stands in for the Telegram transport while the community is set up: the setup's
    replies are not part of the measurement."""

    name = "telegram"
    capabilities = Capabilities(buttons=True, pin=True)

    async def start(self, app) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, chat: str, message: Outgoing) -> Sent:
        return Sent(chat=chat)

    async def send_direct(self, user, dm_chat, message: Outgoing) -> Sent:
        return Sent(chat=str(user))


async def set_up(config: Config, grids: int) -> None:
    """The community, its grids and their linked chats, through the commands."""
    app = App(config, clock=ManualClock(START))
    await app.start([Discard()])

    async def say(chat: int, text: str) -> None:
        await app.handle(Incoming(transport="telegram", chat=str(chat), sender=str(ADMIN),
                                  text=text, sender_username="bench_admin", sender_name="Admin"))

    await say(HQ, "/community 基准社区")
    for i in range(1, grids + 1):
        await say(HQ, f"/grid add g{i} {i}网格")
    for i in range(1, grids + 1):
        await say(grid_chat(i), f"/grid link g{i}")
    await app.stop()


def chat_of(call: Call) -> int | None:
    chat = call.params.get("chat_id")
    return int(chat) if chat is not None else None


def most_in_window(times: list[float], window: float) -> int:
    """The most events in any window of `window` seconds (a rolling window)."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


@dataclass
class FanOut:
    seconds: float  # from writing /announce to the last grid chat's last call
    first: float  # from writing /announce to the first call to a grid chat
    messages: int
    calls: int  # messages and pins to grid chats
    peak_calls: int  # most calls to any chat in a rolling second
    peak_messages: int


async def reply_time(api: BotAPIProcess, user: int, chat: int, text: str) -> float:
    """Seconds from `user` writing `text` in `chat` to the bot's answer there."""
    before = len(api.sent(chat))
    written = time.monotonic()
    await api.user_says(user, chat, text)
    await api.wait_until(lambda: len(api.sent(chat)) > before, TIMEOUT, f"an answer to {text}")
    return api.sent(chat)[before].at - written


async def fan_out(api: BotAPIProcess, grids: int, round_no: int) -> FanOut:
    targets = {grid_chat(i) for i in range(1, grids + 1)}
    mark = len(api.calls())
    written = time.monotonic()
    # `confirm`: sent at once, without the preview the sender would otherwise see first.
    text = f"/announce 第{round_no}号通知：今晚八点前完成本轮排查。 confirm"
    await api.user_says(ADMIN, HQ, text)
    pinned: set[int | None] = set()
    seen = mark

    def done() -> bool:  # looks at the new calls only: this runs in the bot's process
        nonlocal seen
        calls = api.calls()
        pinned.update(chat_of(c) for c in calls[seen:] if c.method == "pinChatMessage")
        seen = len(calls)
        return targets <= pinned

    await api.wait_until(done, TIMEOUT, "every grid chat announced and pinned")
    calls = [c for c in api.calls()[mark:] if chat_of(c) in targets]
    messages = [c.at for c in calls if c.method in MESSAGES]
    return FanOut(
        seconds=max(c.at for c in calls) - written, first=min(c.at for c in calls) - written,
        messages=len(messages), calls=len(calls),
        peak_calls=most_in_window([c.at for c in api.calls()[mark:] if chat_of(c)], 1.0),
        peak_messages=most_in_window(messages, 1.0),
    )


async def measure(workdir: Path, grids: int, rounds: int, burst: int) -> None:
    async with BotAPIProcess() as api:
        await api.add_users([(ADMIN, "Admin", "bench_admin"),
                             (RESIDENT, "Resident", "bench_resident")])
        await api.add_groups([(HQ, "基准社区指挥部")]
                             + [(grid_chat(i), f"{i}网格") for i in range(1, grids + 1)])
        config = Config(data_dir=workdir, telegram_token=api.token,
                        telegram_api_url=api.root_url, admins=(str(ADMIN),))
        await set_up(config, grids)
        app = App(config, clock=ManualClock(START))
        await app.start([TelegramTransport(config)])
        freeze_startup_objects()  # as `gridbot serve` does once started (bot/cli.py)
        try:
            idle = [await reply_time(api, RESIDENT, grid_chat(2), "/help") for _ in range(3)]
            rounds_measured = []
            for round_no in range(1, rounds + 1):
                await asyncio.sleep(ROUND_PAUSE)
                rounds_measured.append(await fan_out(api, grids, round_no))
            await asyncio.sleep(ROUND_PAUSE)
            burst_seconds, other = await burst_in_one_group(api, burst)
        finally:
            await app.stop()
        # Every call of the run counts, whichever phase made it.
        chats = [HQ] + [grid_chat(i) for i in range(1, grids + 1)]
        per_group = max(most_in_window(
            [c.at for c in api.calls() if chat_of(c) == chat and c.method in MESSAGES], 60.0
        ) for chat in chats)
        per_group_calls = max(
            most_in_window([c.at for c in api.calls() if chat_of(c) == chat], 60.0)
            for chat in chats
        )
    report(grids, rounds_measured, burst, burst_seconds, per_group, per_group_calls,
           statistics.median(idle), other)


async def burst_in_one_group(api: BotAPIProcess, burst: int) -> tuple[float, float]:
    """`burst` errands at once in grid chat 1, then a command in grid chat 2; returns the
    seconds until the last errand's answer, and the other chat's reply time."""
    chat = grid_chat(1)
    before = len(api.sent(chat))
    written = time.monotonic()
    for i in range(burst):
        await api.user_says(RESIDENT, chat, f"/errand 帮忙买菜 {i + 1}")
    other = asyncio.create_task(reply_time(api, RESIDENT, grid_chat(2), "/help"))

    def answered() -> int:  # errands answered, alone or merged
        return sum(m.params.get("text", "").count("新代办 E") for m in api.sent(chat)[before:])

    await api.wait_until(lambda: answered() >= burst, TIMEOUT, "every errand answered")
    return api.sent(chat)[-1].at - written, await other


def report(grids: int, rounds: list[FanOut], burst: int, burst_seconds: float, per_group: int,
           per_group_calls: int, idle: float, other: float) -> None:
    calls = rounds[0].calls
    ideal = calls / PER_SECOND
    seconds = statistics.median(r.seconds for r in rounds)
    rate = calls / seconds
    print(f"fan-out: /announce to {grids} grid chats ({rounds[0].messages} messages + "
          f"{calls - rounds[0].messages} pins), median of {len(rounds)} round(s) "
          f"({', '.join(f'{r.seconds:.2f}' for r in rounds)} s)")
    print(f"  time {seconds:.2f} s vs ideal {calls}/{PER_SECOND} = {ideal:.2f} s: "
          f"ratio {seconds / ideal:.3f} (target ≤ 1.05)")
    print(f"  achieved {rate:.1f} calls/s vs {PER_SECOND}: ratio {rate / PER_SECOND:.3f}")
    first = statistics.median(r.first for r in rounds)
    fastest = (calls - 1) // PER_SECOND
    print(f"  first call {first:.2f} s after the command; from it to the last {seconds - first:.2f}"
          f" s vs the fastest {PER_SECOND} in any rolling second allow, {fastest} s: ratio "
          f"{fastest / (seconds - first):.3f}")
    peak_messages = max(r.peak_messages for r in rounds)
    peak_calls = max(r.peak_calls for r in rounds)
    print(f"  most in a rolling second: {peak_messages} messages (ratio "
          f"{peak_messages / PER_SECOND:.2f}), {peak_calls} calls with pins (ratio "
          f"{peak_calls / PER_SECOND:.2f}) vs {PER_SECOND}")
    print(f"burst: {burst} errands at once in one grid chat, all answered in "
          f"{burst_seconds:.1f} s (target ≤ 20 s; one message each, at most "
          f"{PER_GROUP_MINUTE} a minute, would take ≥ {(burst - 1) // PER_GROUP_MINUTE * 60} s)")
    print(f"  most to one group in a rolling minute: {per_group} messages (ratio "
          f"{per_group / PER_GROUP_MINUTE:.2f}), {per_group_calls} calls with pins (ratio "
          f"{per_group_calls / PER_GROUP_MINUTE:.2f}) vs {PER_GROUP_MINUTE}")
    print(f"  a reply in another grid chat during the burst: {other:.2f} s vs {idle * 1000:.0f} ms "
          f"idle: ratio {other / idle:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grids", type=int, default=1000,
                        help="grid chats the announcement reaches")
    parser.add_argument("--rounds", type=int, default=1, help="announcements, measured apart")
    parser.add_argument("--burst", type=int, default=40, help="messages at once to one group")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure(Path(tmp), args.grids, args.rounds, args.burst))


if __name__ == "__main__":
    main()

"""Throughput of 1, 2 and 4 bot instances on one PostgreSQL database.

    python -m bench.instances [--seconds 10] [--instances 1 2 4]

A throwaway PostgreSQL server (tests/servers/postgres.py, here with fsync and synchronous
commit ON: durable, as in production) holds one community of 8 grid chats. Each instance is
a process of its own (`App` with its own instance id, as on its own host) handling the
chats it is given — as when a load balancer spreads Telegram's webhook calls (or each
instance runs its own Matrix account) — with bench.throughput's mix of screenings,
check-ins, errands and claims, one command after the other per chat, its chats side by
side. All start together and run `--seconds`; throughput is every command handled over the
time from the first start to the last end. On 2 cores, more processes than cores share
them; the database is the same server for all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRID_CHATS = 8
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}

INSTANCE = """
import asyncio, json, re, sys, time
from pathlib import Path
from bench import throughput
from bot.app import App
from bot.clock import ManualClock
from bot.config import Config

url, instance, grids, start_at, seconds, workdir = sys.argv[1:7]
grids = [int(g) for g in grids.split(",")]
throughput.KEY_PREFIX = f"bench-{instance}"
NUMBER = re.compile(r"新代办 E(\\d+)：")


class Transport(throughput.NullTransport):
    def __init__(self, posted):
        super().__init__()
        self.posted = posted

    async def send(self, chat, message):
        self.posted += [int(n) for n in NUMBER.findall(message.text)]
        return await super().send(chat, message)


async def main():
    posted = []
    app = App(Config(data_dir=Path(workdir), database_url=url), clock=ManualClock(),
              instance_id=f"bench-{instance}")
    await app.start([Transport(posted)])
    mixes = {g: throughput.Mix(grids=[g], posted=posted) for g in grids}
    handled = 0
    await asyncio.sleep(max(0.0, float(start_at) - time.time()))
    began = time.time()
    deadline = began + float(seconds)

    async def chat(g):
        nonlocal handled
        while time.time() < deadline:
            await app.handle(throughput.message(*mixes[g].next()))
            handled += 1

    await asyncio.gather(*(chat(g) for g in grids))
    ended = time.time()
    await app.stop()
    print(json.dumps({"handled": handled, "began": began, "ended": ended}))


asyncio.run(main())
"""


async def run_instances(url: str, count: int, seconds: float, tmp: Path) -> float:
    per = GRID_CHATS // count
    start_at = time.time() + 8  # after every process has imported and started
    children = []
    for k in range(count):
        grids = ",".join(str(g) for g in range(k * per + 1, (k + 1) * per + 1))
        env = {k_: v for k_, v in os.environ.items() if not k_.startswith("GRIDBOT_")}
        children.append(await asyncio.create_subprocess_exec(
            sys.executable, "-c", INSTANCE, url, str(k), grids, str(start_at), str(seconds),
            str(tmp / f"i{count}-{k}"), cwd=REPO, env=env | {"PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
        ))
    results = []
    for child in children:
        out, _ = await child.communicate()
        if child.returncode:
            raise SystemExit(f"an instance failed (exit {child.returncode})")
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    handled = sum(r["handled"] for r in results)
    return handled / (max(r["ended"] for r in results) - min(r["began"] for r in results))


async def measure(seconds: float, counts: list[int]) -> None:
    from bench import throughput
    from tests.servers.postgres import Postgres

    with Postgres(settings=DURABLE) as server, tempfile.TemporaryDirectory() as tmp:
        rates = {}
        for count in counts:
            url = server.create_database(f"instances_{count}")
            app = await throughput.community(Path(tmp), f"setup{count}", GRID_CHATS, url)
            # The community's first errand number exists before the instances race for it.
            await app.handle(throughput.message("/errand 预热", "g1chat", "w1"))
            await app.stop()
            rates[count] = await run_instances(url, count, seconds, Path(tmp))
    one = rates.get(1)
    for count, rate in rates.items():
        scale = f", ×{rate / one:.2f} of one instance" if one else ""
        print(f"{count} instance(s) on one PostgreSQL: {rate:,.0f} commands/s{scale}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    if any(GRID_CHATS % count for count in args.instances):
        raise SystemExit(f"instances must divide {GRID_CHATS}")
    asyncio.run(measure(args.seconds, args.instances))


if __name__ == "__main__":
    main()

"""Throughput of 1, 2 and 4 bot instances on one PostgreSQL database.

    python -m bench.instances [--seconds 10] [--instances 1 2 4] [--via dispatcher webhook]

A throwaway PostgreSQL server (tests/servers/postgres.py, here with fsync and synchronous
commit ON: durable, as in production) holds one community of 8 grid chats, a fresh database
for each number of instances. Each instance is a process of its own. Two ways in:

- `dispatcher`: each instance (`App` with its own instance id, as on its own host) is given
  a share of the chats and calls the dispatcher directly with bench.throughput's mix of
  screenings, check-ins, errands and claims, one command after the other per chat, its
  chats side by side.
- `webhook`: each instance is `gridbot run` with the Telegram transport in webhook mode
  (`GRIDBOT_TELEGRAM_WEBHOOK_CONNECTIONS=8`, `GRIDBOT_TELEGRAM_INSTANCES=n`), sending its
  replies to the in-repo Bot API server (tests/servers/botapi.py). This process plays
  Telegram and the load balancer: real webhook POSTs over HTTP, with the secret token, as
  Telegram makes them (at most 8 calls at once; a chat's next message only once the call
  for its previous one was answered, which is after it was handled), each call handed to
  the next instance in turn (round robin, as nginx does). The same mix, the 8 grid chats
  side by side.

All instances run `--seconds`; throughput is every command handled over the measured time.
On 2 cores, more processes than cores share them; the database is the same server for all.
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


async def dispatcher_rates(server, tmp: Path, seconds: float, counts: list[int]) -> dict:
    from bench import throughput

    rates = {}
    for count in counts:
        url = server.create_database(f"instances_{count}")
        app = await throughput.community(Path(tmp), f"setup{count}", GRID_CHATS, url)
        # The community's first errand number exists before the instances race for it.
        await app.handle(throughput.message("/errand 预热", "g1chat", "w1"))
        await app.stop()
        rates[count] = await run_instances(url, count, seconds, Path(tmp))
    return rates


# --- webhook mode ---------------------------------------------------------------------------

ADMIN = 500001
HQ = -1001000000000
CONNECTIONS = 8  # Telegram's max_connections: the calls in flight at once
HOOK = "https://bot.example.org/telegram/hook"


def grid_chat(g: int) -> int:
    return HQ - g


def user_of(sender: str) -> int:
    return 600000 + int(sender.lstrip("w"))


class Telegram:
    """Plays Telegram's side of the webhook: numbered updates, POSTed with the secret."""

    def __init__(self, api, http, ports: list[int]) -> None:
        import itertools

        from bot.transports.telegram import webhook_secret

        self.api, self.http = api, http
        self.headers = {"X-Telegram-Bot-Api-Secret-Token": webhook_secret(api.token)}
        self.ids = itertools.count(1)
        self.spread = itertools.cycle(ports)  # the load balancer: round robin

    async def post(self, chat: int, sender: int, text: str) -> None:
        update_id = next(self.ids)
        kind = "private" if chat > 0 else "supergroup"
        user = self.api._users[sender]
        body = {"update_id": update_id, "message": {
            "message_id": update_id, "date": int(time.time()), "text": text,
            "chat": {"id": chat, "type": kind, **({"title": "chat"} if chat < 0 else {})},
            "from": user,
        }}
        port = next(self.spread)
        response = await self.http.post(f"http://127.0.0.1:{port}/telegram/hook", json=body,
                                        headers=self.headers)
        if response.status_code != 200:
            raise SystemExit(f"webhook call answered {response.status_code}")


async def webhook_rate(server, api, tmp: Path, count: int, seconds: float) -> float:
    """`count` instances of `gridbot run` in webhook mode; returns commands/s handled."""
    import re
    import socket

    import httpx

    from bench import throughput
    from tests.integration.test_telegram import free_port

    url = server.create_database(f"webhook_{count}")
    ports = [free_port() for _ in range(count)]
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
    children = []
    for k, port in enumerate(ports):
        env = base | {
            "PYTHONPATH": str(REPO), "GRIDBOT_DATABASE_URL": url,
            "GRIDBOT_DATA_DIR": str(tmp / f"w{count}-{k}"), "GRIDBOT_ADMINS": str(ADMIN),
            "GRIDBOT_TELEGRAM_TOKEN": api.token, "GRIDBOT_TELEGRAM_API_URL": api.root_url,
            "GRIDBOT_TELEGRAM_WEBHOOK_URL": HOOK,
            "GRIDBOT_TELEGRAM_WEBHOOK_LISTEN": f"127.0.0.1:{port}",
            "GRIDBOT_TELEGRAM_WEBHOOK_CONNECTIONS": str(CONNECTIONS),
            "GRIDBOT_TELEGRAM_INSTANCES": str(count), "GRIDBOT_LOG_LEVEL": "WARNING",
        }
        children.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", cwd=REPO, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        ))
    try:
        for port in ports:  # up once its webhook server accepts connections
            deadline = time.time() + 120
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if time.time() > deadline:
                        raise SystemExit("an instance did not start") from None
                    await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # the last `start()` steps after the server is up
        async with httpx.AsyncClient(timeout=120) as http:
            telegram = Telegram(api, http, ports)
            admin = ADMIN
            await telegram.post(HQ, admin, "/community 基准社区")
            for g in range(1, GRID_CHATS + 1):
                chat, worker = grid_chat(g), user_of(f"w{g}")
                for sender, text in (
                    (admin, f"/grid add g{g} {g}网格"), (admin, "/grid link g" + str(g)),
                    (admin, f"/household add {g} units=4 floors=10 rooms=4"),
                    (admin, f"/role @w{g} leader"), (worker, "/join worker"),
                    (worker, f"/watch add {g}-1-101 张三 密接"),
                ):
                    await telegram.post(HQ if text.startswith("/grid add") else chat, sender,
                                        text)
            await telegram.post(grid_chat(1), user_of("w1"), "/errand 预热")

            number = re.compile(r"新代办 E(\d+)：")
            seen = {g: 0 for g in range(1, GRID_CHATS + 1)}

            def posted(g: int, numbers: list[int]) -> None:
                sent = api.sent(grid_chat(g))
                for message in sent[seen[g]:]:
                    numbers += [int(n) for n in number.findall(message["text"] or "")]
                seen[g] = len(sent)

            handled = 0
            began = time.time()
            deadline = began + seconds

            async def chat_stream(g: int) -> None:  # Telegram: one call at a time per chat
                nonlocal handled
                numbers: list[int] = []
                mix = throughput.Mix(grids=[g], posted=numbers)
                while time.time() < deadline:
                    posted(g, numbers)
                    text, _chat, sender = mix.next()
                    await telegram.post(grid_chat(g), user_of(sender), text)
                    handled += 1

            await asyncio.gather(*(chat_stream(g) for g in range(1, GRID_CHATS + 1)))
            rate = handled / (time.time() - began)
    finally:
        for child in children:
            if child.returncode is None:
                child.terminate()
        for child in children:
            _, err = await child.communicate()
            if child.returncode not in (0, -15):
                raise SystemExit(f"an instance failed (exit {child.returncode}): "
                                 f"{err.decode()[-2000:]}")
    return rate


async def webhook_rates(server, tmp: Path, seconds: float, counts: list[int]) -> dict:
    from tests.servers.botapi import FakeBotAPI

    rates = {}
    async with FakeBotAPI() as api:
        api.add_user(ADMIN, "Admin", "bench_admin", started=True)
        api.add_group(HQ, "基准社区指挥部")
        for g in range(1, GRID_CHATS + 1):
            api.add_group(grid_chat(g), f"{g}网格")
            api.add_user(user_of(f"w{g}"), f"W{g}", f"w{g}", started=True)
        for count in counts:
            rates[count] = await webhook_rate(server, api, tmp, count, seconds)
    return rates


async def measure(seconds: float, counts: list[int], via: list[str]) -> None:
    from tests.servers.postgres import Postgres

    with Postgres(settings=DURABLE) as server, tempfile.TemporaryDirectory() as tmp:
        results = {}
        if "dispatcher" in via:
            results["dispatcher"] = await dispatcher_rates(server, Path(tmp), seconds, counts)
        if "webhook" in via:
            results["webhook"] = await webhook_rates(server, Path(tmp), seconds, counts)
    for way, rates in results.items():
        print({"dispatcher": "calling the dispatcher directly:",
               "webhook": f"Telegram webhook POSTs, round robin, max_connections={CONNECTIONS}:"
               }[way])
        one = rates.get(1)
        for count, rate in rates.items():
            scale = f", ×{rate / one:.2f} of one instance" if one else ""
            print(f"  {count} instance(s) on one PostgreSQL: {rate:,.1f} commands/s{scale}")
    print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--via", nargs="+", choices=["dispatcher", "webhook"],
                        default=["dispatcher", "webhook"])
    args = parser.parse_args()
    if any(GRID_CHATS % count for count in args.instances):
        raise SystemExit(f"instances must divide {GRID_CHATS}")
    asyncio.run(measure(args.seconds, args.instances, args.via))


if __name__ == "__main__":
    main()

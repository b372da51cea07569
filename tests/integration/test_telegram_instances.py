"""Two bot instances in Telegram's webhook mode on one PostgreSQL, behind a round-robin
spread as a load balancer would do it: Telegram hands a chat's messages out one at a time
(the next once the previous call was answered), any instance may get any of them, and a
call Telegram repeats (its answer lost) may land on the other instance."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from bot.app import App
from bot.clock import Clock
from bot.config import Config
from bot.transports.telegram import TelegramTransport, webhook_secret
from storage import models
from storage.db import Database
from tests.integration.test_telegram import ADMIN, HQ, config_for, free_port, populate, texts
from tests.servers.botapi import FakeBotAPI, botapi

__all__ = ["botapi"]  # the fixture, used by name

REPO = Path(__file__).resolve().parents[2]
URL = "https://gridbot.example/telegram/hook"
PER_CHAT = 12


def update(update_id: int, chat: dict, text: str) -> dict:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id, "date": int(time.time()), "text": text, "chat": chat,
            "from": {"id": ADMIN, "is_bot": False, "first_name": "Admin",
                     "username": "the_admin"},
        },
    }


class Instance:
    """One gridbot process's worth: an App with its Telegram transport listening on a port
    of its own; counts the updates posted to it."""

    def __init__(self, botapi: FakeBotAPI, data_dir: Path, database_url: str, name: str):
        self.port = free_port()
        self.config = config_for(
            botapi, data_dir / name, database_url=database_url, telegram_webhook_url=URL,
            telegram_webhook_listen=f"127.0.0.1:{self.port}", telegram_webhook_connections=4,
            telegram_instances=2,
        )
        self.app = App(self.config, clock=Clock(), instance_id=name)
        self.posted: list[int] = []

    async def post(self, http: httpx.AsyncClient, body: dict, secret: str) -> None:
        self.posted.append(body["update_id"])
        response = await http.post(
            f"http://127.0.0.1:{self.port}/telegram/hook", json=body,
            headers={"X-Telegram-Bot-Api-Secret-Token": secret},
        )
        assert response.status_code == 200


async def test_two_webhook_instances_answer_each_update_once(
    botapi: FakeBotAPI, tmp_path: Path, postgres_url: str
) -> None:
    pytest.importorskip("tornado", reason="webhook mode needs python-telegram-bot[webhooks]")
    populate(botapi)
    botapi.add_user(ADMIN, "Admin", "the_admin", started=True)  # writes to the bot directly
    secret = webhook_secret(botapi.token)
    a, b = (Instance(botapi, tmp_path, postgres_url, name) for name in ("a", "b"))
    for instance in (a, b):
        await instance.app.start([TelegramTransport(instance.config)])
    try:
        # Both registered the same webhook; the second changed nothing.
        calls = botapi.calls("setWebhook")
        assert len(calls) == 2 and botapi.webhook_url == URL
        assert {c.params["secret_token"] for c in calls} == {secret}
        assert {c.params["max_connections"] for c in calls} == {"4"}

        ids = itertools.count(1000)
        spread = itertools.cycle((a, b))  # round robin over every call, as nginx does
        hq = {"id": HQ, "type": "supergroup", "title": "阳光社区指挥部"}
        direct = {"id": ADMIN, "type": "private", "first_name": "Admin", "username": "the_admin"}
        async with httpx.AsyncClient(timeout=60) as http:
            await next(spread).post(http, update(next(ids), hq, "/community 阳光社区"), secret)

            async def chat_stream(chat: dict, prefix: str) -> None:
                """Telegram's order within a chat: one call at a time. Every other update is
                delivered twice, the second time to the other instance."""
                for n in range(1, PER_CHAT + 1):
                    body = update(next(ids), chat, f"/grid add {prefix}{n:02} 网格{prefix}{n:02}")
                    first = next(spread)
                    await first.post(http, body, secret)
                    if n % 2:
                        await (b if first is a else a).post(http, body, secret)

            await asyncio.gather(chat_stream(hq, "h"), chat_stream(direct, "d"))
        for instance in (a, b):
            await instance.app.outbox.idle()

        # Each instance was handed a share, and the repeated calls went to the other one.
        assert len(a.posted) + len(b.posted) == 1 + 2 * PER_CHAT + PER_CHAT
        assert set(a.posted) & set(b.posted) and set(a.posted) - set(b.posted)
        assert set(b.posted) - set(a.posted)
        # Every command handled once, in its chat's order, and answered once.
        async with a.app.db.transaction() as db:
            codes = list(await db.scalars(select(models.Grid.code).order_by(models.Grid.id)))
            keys = list(await db.scalars(select(models.ProcessedMessage.key)))
        for prefix in "hd":
            mine = [c for c in codes if c.startswith(prefix)]
            assert mine == [f"{prefix}{n:02}" for n in range(1, PER_CHAT + 1)]
        assert len(codes) == 2 * PER_CHAT and len(keys) == 1 + 2 * PER_CHAT
        # (A group's replies beyond each instance's share of its allowance go out merged.)
        for chat, prefix in ((HQ, "h"), (ADMIN, "d")):
            answered = re.findall(r"已创建网格 (\w+)「", "\n".join(texts(botapi.sent(chat))))
            assert sorted(answered) == [f"{prefix}{n:02}" for n in range(1, PER_CHAT + 1)]
    finally:
        for instance in (a, b):
            await instance.app.stop()


async def test_instances_started_together_on_a_new_database_migrate_once(
    postgres_url: str, tmp_path: Path
) -> None:
    """Every instance migrates at start: here four at the same moment, on a fresh database
    (each its own process, as `gridbot migrate`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")} | {
        "PYTHONPATH": str(REPO), "GRIDBOT_DATABASE_URL": postgres_url,
        "GRIDBOT_DATA_DIR": str(tmp_path),
    }
    runs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "migrate", cwd=REPO, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outcomes = [await run.communicate() for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, [err.decode()[-500:] for _, err in outcomes]
    database = Database(postgres_url)
    try:
        async with database.connection() as conn:
            versions = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).all()
        assert len(versions) == 1
    finally:
        await database.close()


@pytest.mark.parametrize(("instances", "per_second", "burst", "per_minute"),
                         [(1, 30, 10, 20), (2, 15, 5, 10), (3, 10, 3, 20 / 3), (4, 7, 2, 5)])
def test_each_instance_keeps_to_its_share_of_telegrams_limits(
    instances: int, per_second: int, burst: int, per_minute: float
) -> None:
    """n instances on one token: together never over 30 calls a second, nor over 20
    messages a minute to one group."""
    transport = TelegramTransport(Config(telegram_token="123:abc", telegram_instances=instances))
    assert transport.ptb.bot.rate_limiter.per_second == per_second
    group = transport.budget("-1001000000001")
    assert group is not None and group.capacity == burst
    assert group.capacity + group.per_second * 60 == pytest.approx(per_minute)
    assert transport.budget("42") is None  # a private chat has no allowance of its own

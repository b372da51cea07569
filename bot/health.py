"""`gridbot check`: is this deployment healthy? For systemd (ExecStartPre, a watchdog timer)
and container health checks. Prints one line per check and exits 0 when all pass, 1 when
one fails.

Checked: the database is reachable and migrated to the newest schema; each configured
transport accepts its credentials (Telegram getMe; Matrix whoami with the saved session, or
a login that is logged out again); shown for information: who holds the scheduler lease
and, on SQLite, which process holds the database.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from bot.config import Config
from bot.lock import InstanceLock, sqlite_file
from storage import models
from storage.db import Database, alembic_config

TIMEOUT = 15  # seconds for each check


class Report:
    def __init__(self) -> None:
        self.failed = 0

    def ok(self, what: str, detail: str) -> None:
        print(f"ok    {what}: {detail}", flush=True)

    def info(self, what: str, detail: str) -> None:
        print(f"info  {what}: {detail}", flush=True)

    def fail(self, what: str, detail: str) -> None:
        self.failed += 1
        print(f"FAIL  {what}: {detail}", flush=True)


async def check(config: Config) -> int:
    report = Report()
    await _database(config, report)
    if config.telegram_enabled:
        await _guarded(report, "telegram", _telegram(config, report))
    if config.matrix_enabled:
        await _guarded(report, "matrix", _matrix(config, report))
    if not (config.telegram_enabled or config.matrix_enabled):
        report.info("transports", "none configured: `gridbot run` starts the console")
    return 1 if report.failed else 0


async def _guarded(report: Report, what: str, work) -> None:
    try:
        async with asyncio.timeout(TIMEOUT):
            await work
    except TimeoutError:
        report.fail(what, f"no answer within {TIMEOUT} s")
    except Exception as error:
        report.fail(what, f"{type(error).__name__}: {error}")


async def _database(config: Config, report: Report) -> None:
    path = sqlite_file(config.db_url)
    where = str(path) if path else config.db_url.split("@")[-1]
    if path is not None and not path.exists():
        report.fail("database", f"no database at {path} (run `gridbot migrate`)")
        return
    db = Database(config.db_url)
    try:
        async with asyncio.timeout(TIMEOUT):
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                current = await conn.run_sync(
                    lambda c: set(MigrationContext.configure(c).get_current_heads())
                )
        report.ok("database", f"reachable ({where})")
        heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
        if current == heads:
            report.ok("schema", f"migrated ({', '.join(sorted(heads))})")
        else:
            report.fail("schema", f"at {', '.join(sorted(current)) or 'nothing'}, newest is "
                                  f"{', '.join(sorted(heads))} (run `gridbot migrate`)")
            return
        async with db.transaction() as session:
            lease = await session.get(models.Lease, "jobs")
        _lease(config, lease, report)
    except TimeoutError:
        report.fail("database", f"no answer from {where} within {TIMEOUT} s")
    except Exception as error:
        report.fail("database", f"cannot reach {where}: {type(error).__name__}: {error}")
    finally:
        await db.close()
    if path is not None:
        holder = InstanceLock(path).holder()
        report.info("instance", f"pid {holder} runs on this SQLite file" if holder
                    else "no gridbot is running on this SQLite file")


def _lease(config: Config, lease, report: Report) -> None:
    from bot.app import _instance_id

    if lease is None:
        report.info("scheduler", "lease never taken (no instance has run jobs yet)")
        return
    until = lease.until if lease.until.tzinfo else lease.until.replace(tzinfo=UTC)
    mine = " (this host and data dir)" if lease.owner == _instance_id(config) else ""
    if until > datetime.now(UTC):
        report.ok("scheduler", f"lease held by {lease.owner}{mine} until {until:%Y-%m-%d %H:%M} UTC")
    else:
        report.info("scheduler", f"lease free since {until:%Y-%m-%d %H:%M} UTC (held last by "
                                 f"{lease.owner}{mine}); the next instance to start takes it")


async def _telegram(config: Config, report: Report) -> None:
    from telegram import Bot
    from telegram.error import InvalidToken, NetworkError

    bot = Bot(config.telegram_token, base_url=f"{config.telegram_api_url}/bot")
    try:
        me = await bot.get_me()
    except InvalidToken:
        report.fail("telegram", "the token was refused (GRIDBOT_TELEGRAM_TOKEN)")
        return
    except NetworkError as error:
        report.fail("telegram", f"cannot reach {config.telegram_api_url}: {error}")
        return
    finally:
        await bot.shutdown()
    report.ok("telegram", f"token valid: @{me.username}")


async def _matrix(config: Config, report: Report) -> None:
    from nio import AsyncClient, LoginResponse, WhoamiResponse

    client = AsyncClient(config.matrix_homeserver, config.matrix_user)
    try:
        session = await _saved(config, f"matrix:session:{config.matrix_user}")
        if session and session.get("homeserver") == config.matrix_homeserver:
            client.restore_login(session["user_id"], session["device_id"], session["access_token"])
            answer = await client.whoami()
            if isinstance(answer, WhoamiResponse):
                report.ok("matrix", f"saved session valid: {answer.user_id}")
                return
        answer = await client.login(config.matrix_password, device_name="gridbot check")
        if not isinstance(answer, LoginResponse):
            report.fail("matrix", f"login as {config.matrix_user} failed: {answer}")
            return
        await client.logout()  # the check leaves no device behind
        report.ok("matrix", f"password valid: {answer.user_id}")
    finally:
        await client.close()


async def _saved(config: Config, key: str) -> dict | None:
    db = Database(config.db_url)
    try:
        async with db.transaction() as session:
            row = await session.get(models.KeyValue, key)
        return json.loads(row.value) if row else None
    except Exception:
        return None
    finally:
        await db.close()


__all__ = ["check"]

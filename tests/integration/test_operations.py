"""Running gridbot as an operator does, in processes of its own: one instance per SQLite
file, graceful stop on SIGTERM and Ctrl-C (a second signal exits at once), `gridbot check`,
and logs that stay out of the console conversation."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.integration.test_telegram import (
    ADMIN,
    HQ,
    config_for,
    handled,
    handled_keys,
    populate,
    running,
    say,
    texts,
)
from tests.servers.botapi import FakeBotAPI, botapi

__all__ = ["botapi"]  # the fixture, used by name

REPO = Path(__file__).resolve().parents[2]
WAIT = 60  # seconds: generous bounds for slow machines, never asserted as timings


def gridbot_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
    return env | {"GRIDBOT_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO), **extra}


async def gridbot(data_dir: Path, *args: str, stdin=asyncio.subprocess.PIPE, **env: str):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args, cwd=REPO, env=gridbot_env(data_dir, **env),
        stdin=stdin, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def until(condition, what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.05)


async def read_until(stream: asyncio.StreamReader, marker: str) -> str:
    seen = ""
    async with asyncio.timeout(WAIT):
        while marker not in seen:
            line = await stream.readline()
            if not line:
                break
            seen += line.decode()
    return seen


def log_text(data_dir: Path, name: str = "gridbot.log") -> str:
    path = data_dir / name
    return path.read_text(encoding="utf-8") if path.exists() else ""


@pytest.mark.slow
async def test_a_second_instance_on_one_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    first = await gridbot(tmp_path, "run")
    first.stdin.write(b"/help\n")
    await first.stdin.drain()
    await read_until(first.stdout, "[hq]")  # up and answering

    second = await gridbot(tmp_path, "run", stdin=asyncio.subprocess.DEVNULL)
    out, err = await second.communicate()
    assert second.returncode == 3
    assert "already running" in err.decode() and "PostgreSQL" in err.decode()
    assert str(first.pid) in err.decode()

    check = await gridbot(tmp_path, "check", stdin=asyncio.subprocess.DEVNULL)
    out, _ = await check.communicate()
    assert check.returncode == 0
    assert f"pid {first.pid} runs on this SQLite file" in out.decode()

    first.stdin.close()  # end of input: the first one stops, and its lock goes with it
    assert await first.wait() == 0
    third = await gridbot(tmp_path, "run")
    out, err = await third.communicate(b"/help\n")
    assert third.returncode == 0 and "[hq]" in out.decode()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_the_console_stops_gracefully_on_a_signal_with_no_logs_in_the_chat(
    tmp_path: Path, sig: signal.Signals
) -> None:
    bot = await gridbot(tmp_path, "run")
    bot.stdin.write("/community 阳光社区\n".encode())
    await bot.stdin.drain()
    shown = await read_until(bot.stdout, "[hq]")
    bot.send_signal(sig)
    out, err = await bot.communicate()
    assert bot.returncode == 0
    shown += out.decode()
    assert "阳光社区" in shown
    for noise in ("INFO", "alembic", "apscheduler", "Scheduler started"):
        assert noise not in shown and noise not in err.decode()
    log = log_text(tmp_path)
    assert "alembic.runtime.migration" in log  # Alembic's lines went to the file
    assert "command transport=console chat=hq person=admin command=/community outcome=ok" in log
    assert f"{sig.name}: stopping" in log and "gridbot: stopped" in log


@pytest.mark.slow
async def test_log_level_from_the_environment(tmp_path: Path) -> None:
    bot = await gridbot(tmp_path, "run", GRIDBOT_LOG_LEVEL="warning")
    out, err = await bot.communicate(b"/help\n")
    assert bot.returncode == 0
    assert " INFO " not in log_text(tmp_path)
    bad = await gridbot(tmp_path, "run", GRIDBOT_LOG_LEVEL="chatty")
    out, err = await bad.communicate(b"")
    assert bad.returncode == 2 and "log level must be one of" in err.decode()


@pytest.mark.slow
async def test_check_reports_database_schema_and_telegram_credentials(
    botapi: FakeBotAPI, tmp_path: Path
) -> None:
    check = await gridbot(tmp_path, "check", stdin=asyncio.subprocess.DEVNULL)
    out, _ = await check.communicate()
    assert check.returncode == 1 and "FAIL  database: no database" in out.decode()

    migrate = await gridbot(tmp_path, "migrate", stdin=asyncio.subprocess.DEVNULL)
    await migrate.communicate()
    telegram = {"GRIDBOT_TELEGRAM_TOKEN": botapi.token, "GRIDBOT_TELEGRAM_API_URL": botapi.root_url}
    check = await gridbot(tmp_path, "check", stdin=asyncio.subprocess.DEVNULL, **telegram)
    out, _ = await check.communicate()
    report = out.decode()
    assert check.returncode == 0, report
    assert "ok    schema: migrated" in report
    assert f"ok    telegram: token valid: @{botapi.bot_username}" in report
    assert "scheduler" in report

    wrong = telegram | {"GRIDBOT_TELEGRAM_TOKEN": "42:wrong"}
    check = await gridbot(tmp_path, "check", stdin=asyncio.subprocess.DEVNULL, **wrong)
    out, _ = await check.communicate()
    assert check.returncode == 1 and "FAIL  telegram" in out.decode()

    gone = telegram | {"GRIDBOT_TELEGRAM_API_URL": "http://127.0.0.1:9"}
    check = await gridbot(tmp_path, "check", stdin=asyncio.subprocess.DEVNULL, **gone)
    out, _ = await check.communicate()
    assert check.returncode == 1 and "FAIL  telegram" in out.decode()

    # With the bot running, the lease is held by it.
    populate(botapi)
    async with running(config_for(botapi, tmp_path)) as app:
        await app.run_job(lambda jc: asyncio.sleep(0))
        check = await gridbot(tmp_path, "check", stdin=asyncio.subprocess.DEVNULL, **telegram)
        out, _ = await check.communicate()
    assert "ok    scheduler: lease held by" in out.decode()


BURST = 20


def telegram_env(api: FakeBotAPI) -> dict[str, str]:
    return {"GRIDBOT_TELEGRAM_TOKEN": api.token, "GRIDBOT_TELEGRAM_API_URL": api.root_url,
            "GRIDBOT_ADMINS": str(ADMIN)}


def pending_replies(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "gridbot.db") as db:
        [(count,)] = db.execute(
            "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND error IS NULL"
        ).fetchall()
    return count


@pytest.mark.slow
async def test_sigterm_mid_burst_finishes_what_it_took_and_loses_nothing(
    botapi: FakeBotAPI, tmp_path: Path
) -> None:
    populate(botapi)
    config = config_for(botapi, tmp_path)
    async with running(config):
        await say(botapi, ADMIN, HQ, "/community 阳光社区")
    baseline = handled_keys(tmp_path)
    before = len(botapi.sent(ADMIN))
    for n in range(1, BURST + 1):
        botapi.user_says(ADMIN, ADMIN, f"/grid add g{n:02} 网格{n:02}")

    bot = await gridbot(tmp_path, "run", stdin=asyncio.subprocess.DEVNULL, **telegram_env(botapi))
    await until(lambda: handled_keys(tmp_path) - baseline >= 3, "some commands handled")
    bot.send_signal(signal.SIGTERM)
    _, err = await bot.communicate()
    assert bot.returncode == 0, err.decode()[-2000:]
    assert "SIGTERM: stopping" in err.decode() and "gridbot: stopped" in err.decode()
    done = handled_keys(tmp_path) - baseline
    # Whatever it took in hand was finished and confirmed (the offset saved), and answered.
    assert botapi.pending_updates() == BURST - done
    assert pending_replies(tmp_path) == 0
    assert len(botapi.sent(ADMIN)) - before == done

    async with running(config):
        await handled(botapi, timeout=WAIT)
    replies = texts(botapi.sent(ADMIN)[before:])
    assert len(replies) == BURST and all(r.startswith("已创建网格") for r in replies)
    assert len(set(replies)) == BURST  # none twice


@pytest.mark.slow
async def test_a_second_sigterm_exits_at_once_and_the_outbox_keeps_the_reply(
    botapi: FakeBotAPI, tmp_path: Path
) -> None:
    populate(botapi)
    config = config_for(botapi, tmp_path)
    async with running(config):
        await say(botapi, ADMIN, HQ, "/community 阳光社区")
    baseline = handled_keys(tmp_path)

    name, send = botapi._methods["sendmessage"]

    async def stalled(params):  # Telegram hangs on sending: a graceful stop would wait
        await asyncio.sleep(WAIT)
        return await send(params)

    botapi._methods["sendmessage"] = (name, stalled)
    bot = await gridbot(tmp_path, "run", stdin=asyncio.subprocess.DEVNULL, **telegram_env(botapi))
    botapi.user_says(ADMIN, HQ, "/grid add g1 一网格")
    await until(lambda: handled_keys(tmp_path) - baseline == 1, "the command handled")
    bot.send_signal(signal.SIGTERM)
    seen = await read_until(bot.stderr, "SIGTERM: stopping")
    bot.send_signal(signal.SIGTERM)
    _, err = await bot.communicate()
    assert bot.returncode == 128 + signal.SIGTERM
    assert "exiting at once" in seen + err.decode()
    assert pending_replies(tmp_path) == 1  # kept for the next start

    botapi._methods["sendmessage"] = (name, send)
    async with running(config):
        await handled(botapi)
    assert any(t.startswith("已创建网格 g1") for t in texts(botapi.sent(HQ)))


@pytest.mark.slow
async def test_check_reports_matrix_credentials(synapse, tmp_path: Path) -> None:
    name = f"checkbot-{os.getpid()}-{tmp_path.name[-6:]}"
    user = await asyncio.to_thread(synapse.register, name, "right-password")
    migrate = await gridbot(tmp_path, "migrate", stdin=asyncio.subprocess.DEVNULL)
    await migrate.communicate()
    matrix = {"GRIDBOT_MATRIX_HOMESERVER": synapse.url, "GRIDBOT_MATRIX_USER": user,
              "GRIDBOT_MATRIX_PASSWORD": "right-password"}
    check = await gridbot(tmp_path, "check", stdin=asyncio.subprocess.DEVNULL, **matrix)
    out, _ = await check.communicate()
    assert check.returncode == 0 and f"ok    matrix: password valid: {user}" in out.decode()

    wrong = matrix | {"GRIDBOT_MATRIX_PASSWORD": "wrong-password"}
    check = await gridbot(tmp_path, "check", stdin=asyncio.subprocess.DEVNULL, **wrong)
    out, _ = await check.communicate()
    assert check.returncode == 1 and "FAIL  matrix: login" in out.decode()


DOWN_COMMANDS = 6  # sent while the bot is down
SENT_AT_MOST = 200  # commands sent while it runs and stops, in case it never stops


def matrix_state(data_dir: Path, bot_user: str) -> tuple[str | None, int]:
    """The sync token the bot saved and how many Matrix events it recorded as handled (read
    beside the bot)."""
    with sqlite3.connect(data_dir / "gridbot.db") as db:
        token = db.execute(
            "SELECT value FROM key_values WHERE key = ?", (f"matrix:next_batch:{bot_user}",)
        ).fetchall()
        [(handled,)] = db.execute(
            "SELECT count(*) FROM processed_messages WHERE key LIKE 'matrix:%'"
        ).fetchall()
    return (token[0][0] if token else None), handled


@pytest.mark.slow
async def test_matrix_sigterm_mid_stream_answers_every_command_once(
    synapse, tmp_path: Path
) -> None:
    """`gridbot run` on Matrix, stopped with SIGTERM while an admin keeps sending commands
    until it has exited, and a few more while it is down: it stops reading at once (the flow
    does not hold the stop off), exits 0 having saved its sync token and the events it
    handled, all of them answered; after a restart every command is answered exactly once."""
    from tests.integration.matrix_helpers import BOT_PASSWORD, Member, eventually, unique

    admin = await Member.register(synapse, "admin")
    user = await asyncio.to_thread(synapse.register, unique("gridbot"), BOT_PASSWORD)
    env = {"GRIDBOT_MATRIX_HOMESERVER": synapse.url, "GRIDBOT_MATRIX_USER": user,
           "GRIDBOT_MATRIX_PASSWORD": BOT_PASSWORD, "GRIDBOT_ADMINS": admin.user_id}
    bot = await gridbot(tmp_path, "run", stdin=asyncio.subprocess.DEVNULL, **env)
    try:
        hq = await admin.create_room("HQ", user)
        await eventually(lambda: admin.joined(hq, user), "the bot joining HQ")
        assert "已创建社区" in (await admin.ask(hq, user, "/community 阳光社区"))[0]
        before = len(admin.notices(hq, user))
        _, baseline = matrix_state(tmp_path, user)
        codes: list[str] = []

        async def add_grid() -> None:
            code = f"m{len(codes) + 1:03}"
            await admin.say(hq, f"/grid add {code} 网格{code}")
            codes.append(code)

        async def keep_sending() -> None:
            while bot.returncode is None and len(codes) < SENT_AT_MOST:
                await add_grid()
                await asyncio.sleep(0.05)

        sending = asyncio.create_task(keep_sending())
        await eventually(lambda: len(admin.notices(hq, user)) >= before + 3, "the first answers")
        bot.send_signal(signal.SIGTERM)
        _, err = await bot.communicate()
        await sending
        log = err.decode()
        assert bot.returncode == 0, log[-3000:]
        assert "SIGTERM: stopping" in log and "gridbot: stopped" in log
        assert len(codes) < SENT_AT_MOST  # it stopped while the commands kept coming
        # What it handled is recorded, its sync position saved, and each such command was
        # answered before it exited (nothing left in the outbox).
        token, handled = matrix_state(tmp_path, user)
        done = handled - baseline
        assert token is not None and 3 <= done <= len(codes)
        assert pending_replies(tmp_path) == 0
        await eventually(lambda: len(admin.notices(hq, user)) >= before + done, "its answers")
        for _ in range(DOWN_COMMANDS):
            await add_grid()

        bot = await gridbot(tmp_path, "run", stdin=asyncio.subprocess.DEVNULL, **env)
        await eventually(lambda: len(admin.notices(hq, user)) >= before + len(codes),
                         "every answer after the restart")
        # A room's commands are handled in order: once this one is answered, none is due.
        await admin.ask(hq, user, "/grid list")
        answers = admin.notices(hq, user)[before:-1]
        assert sorted(answers) == sorted(
            f"已创建网格 {c}「网格{c}」。请在该网格的群里发送 /grid link {c}。" for c in codes
        )
        bot.send_signal(signal.SIGTERM)
        _, err = await bot.communicate()
        assert bot.returncode == 0, err.decode()[-3000:]
        new_token, handled = matrix_state(tmp_path, user)
        assert new_token != token and handled - baseline == len(codes) + 1
        with sqlite3.connect(tmp_path / "gridbot.db") as db:
            [(grids,)] = db.execute("SELECT count(*) FROM grids").fetchall()
        assert grids == len(codes)
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
        await admin.close()

"""`gridbot run | console | migrate | check | check-config | export`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from bot import config as config_module
from bot import logs
from bot.app import App
from bot.clock import Clock
from bot.heap import freeze_startup_objects
from bot.lock import AlreadyRunning, InstanceLock, sqlite_file
from bot.transports.base import Transport
from commands.export import KINDS as EXPORT_KINDS

log = logging.getLogger("gridbot")

EXIT_CONFIG = 2  # the configuration is invalid
EXIT_RUNNING = 3  # another instance holds the SQLite database


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gridbot", description=__doc__)
    parser.add_argument(
        "--log-level", default=None,
        help="DEBUG, INFO, WARNING, ERROR (default: GRIDBOT_LOG_LEVEL, else INFO when running)",
    )
    sub = parser.add_subparsers(dest="action")
    sub.add_parser("run", help="run every configured transport (the console if none is)")
    sub.add_parser("console", help="chat with the bot in this terminal")
    sub.add_parser("migrate", help="bring the database schema up to date")
    sub.add_parser("check", help="check database, migrations, transports and scheduler lease; "
                                 "exit code 0 when healthy")
    sub.add_parser("check-config", help="validate the configuration and show it")
    export = sub.add_parser("export", help="write a community's records to a CSV file")
    export.add_argument("kind", choices=EXPORT_KINDS)
    export.add_argument("--community", required=True, help="the community's name or number")
    export.add_argument("--from", dest="first", type=_date, help="first day, YYYY-MM-DD")
    export.add_argument("--to", dest="last", type=_date, help="last day, YYYY-MM-DD")
    export.add_argument("--out", required=True, help="the CSV file to write")
    options = parser.parse_args(argv)
    action = options.action or "run"
    try:
        config = config_module.load()
    except config_module.ConfigError as error:
        print(f"gridbot: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    networked = config.telegram_enabled or config.matrix_enabled
    console = action == "console" or (action == "run" and not networked)
    try:
        default = "INFO" if action == "run" or console else "WARNING"
        level = logs.level_from(options.log_level, default)
    except ValueError as error:
        print(f"gridbot: {error}", file=sys.stderr)
        return EXIT_CONFIG
    # On the console the conversation is the terminal: logs go to a file in the data dir.
    logs.setup(level, config.data_dir / logs.LOG_FILE if console else None)
    if action == "check-config":
        return _check_config(config)
    if action == "check":
        from bot.health import check

        return asyncio.run(check(config))
    if action == "migrate":
        return asyncio.run(_migrate(config))
    if action == "export":
        return asyncio.run(_export(config, options))
    try:
        with _one_instance(config):
            return asyncio.run(_console(config) if console else _serve(config))
    except AlreadyRunning as error:
        print(f"gridbot: {error}", file=sys.stderr)
        return EXIT_RUNNING
    except Exception as error:  # e.g. the database or a transport's server unreachable
        log.exception("could not run")
        print(f"gridbot: could not run: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


@contextmanager
def _one_instance(config: config_module.Config):
    """Holds the SQLite database's instance lock while the bot runs (see bot/lock.py)."""
    database = sqlite_file(config.db_url)
    if database is None:
        yield
        return
    lock = InstanceLock(database)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _check_config(config: config_module.Config) -> int:
    print(f"database: {config.db_url.split('@')[-1]}")
    print(f"data dir: {config.data_dir}")
    print(f"admins: {', '.join(config.admins) or '(none: only the console admin)'}")
    print(f"telegram: {'on' if config.telegram_enabled else 'off'}")
    print(f"matrix: {'on' if config.matrix_enabled else 'off'}")
    print(f"defaults: lang={config.lang} tz={config.tz}")
    return 0


async def _migrate(config: config_module.Config) -> int:
    from storage.db import Database

    if config.db_url.startswith("sqlite"):
        config.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.db_url)
    await db.migrate()
    await db.close()
    print("database is up to date")
    return 0


def _on_signals(stop) -> None:
    """SIGTERM or Ctrl-C: `stop()` (finish what is in hand, then exit); a second one exits
    at once."""
    loop = asyncio.get_running_loop()

    def at_once(sig: signal.Signals) -> None:
        log.warning("%s again: exiting at once", sig.name)
        logging.shutdown()
        os._exit(128 + sig)

    def first(sig: signal.Signals) -> None:
        log.info("%s: stopping (finishing messages in hand; send it again to exit at once)",
                 sig.name)
        for again in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(again, at_once, again)
        stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, first, sig)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text}") from None


async def _export(config: config_module.Config, options: argparse.Namespace) -> int:
    """The same CSV file as /export in a chat, for the whole community, written to --out."""
    from sqlalchemy import select

    from bot.context import Actions
    from bot.errors import Reject
    from commands.export import export_csv
    from storage import models

    if config.db_url.startswith("sqlite") and not config.data_dir.exists():
        print(f"gridbot: no database in {config.data_dir}", file=sys.stderr)
        return 1
    app = App(config, clock=Clock())
    try:
        await app.db.migrate()
        async with app.db.transaction() as db:
            name = options.community
            query = select(models.Community).where(
                (models.Community.id == int(name)) if name.isdigit()
                else (models.Community.name == name)
            )
            found = (await db.scalars(query.order_by(models.Community.id))).all()
            if len(found) != 1:
                others = ", ".join(f"{c.id} {c.name}" for c in found)
                print(f"gridbot: {'no' if not found else 'more than one'} community {name!r}"
                      + (f" ({others}: give the number)" if others else ""), file=sys.stderr)
                return 1
            actions = Actions(app=app, db=db, now=app.clock.now(), community=found[0])
            try:
                made = await export_csv(
                    actions, options.kind, first=options.first, last=options.last
                )
            except Reject as problem:
                print("gridbot: " + actions.render(problem.template, **problem.values),
                      file=sys.stderr)
                return 1
    finally:
        await app.db.close()
    await asyncio.to_thread(Path(options.out).write_bytes, made.data)
    print(f"{made.rows} rows written to {options.out}")
    return 0


async def _console(config: config_module.Config) -> int:
    from bot.transports.console import ConsoleTransport, first_lines_and_clock

    console = ConsoleTransport()
    first, clock = first_lines_and_clock(sys.stdin, config.tz)
    app = App(config, clock=clock)
    _on_signals(console.stop_reading)
    try:
        await app.start([console])
        log.info("running: console")
        await console.run(first)
    finally:
        await app.stop()
        log.info("stopped")
    return 0


async def _serve(config: config_module.Config) -> int:
    transports: list[Transport] = []
    if config.telegram_enabled:
        from bot.transports.telegram import TelegramTransport

        transports.append(TelegramTransport(config))
    if config.matrix_enabled:
        from bot.transports.matrix import MatrixTransport

        transports.append(MatrixTransport(config))
    app = App(config, clock=Clock())
    stop = asyncio.Event()
    _on_signals(stop.set)
    try:
        await app.start(transports)
        freeze_startup_objects()  # bot/heap.py: full collections skip what lives for good
        log.info("running: %s", ", ".join(t.name for t in transports))
        await stop.wait()
    finally:
        await app.stop()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

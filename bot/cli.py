"""`gridbot run | console | migrate | check-config | export`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import date
from pathlib import Path

from bot import config as config_module
from bot.app import App
from bot.clock import Clock
from commands.export import KINDS as EXPORT_KINDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gridbot", description=__doc__)
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default)")
    sub = parser.add_subparsers(dest="action")
    sub.add_parser("run", help="run every configured transport (the console if none is)")
    sub.add_parser("console", help="chat with the bot in this terminal")
    sub.add_parser("migrate", help="bring the database schema up to date")
    sub.add_parser("check-config", help="validate the configuration and show it")
    export = sub.add_parser("export", help="write a community's records to a CSV file")
    export.add_argument("kind", choices=EXPORT_KINDS)
    export.add_argument("--community", required=True, help="the community's name or number")
    export.add_argument("--from", dest="first", type=_date, help="first day, YYYY-MM-DD")
    export.add_argument("--to", dest="last", type=_date, help="last day, YYYY-MM-DD")
    export.add_argument("--out", required=True, help="the CSV file to write")
    options = parser.parse_args(argv)
    action = options.action or "run"
    logging.basicConfig(
        level=(options.log_level or ("INFO" if action == "run" else "WARNING")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = config_module.load()
    except config_module.ConfigError as error:
        print(f"gridbot: configuration error: {error}", file=sys.stderr)
        return 2
    if action == "check-config":
        return _check_config(config)
    if action == "migrate":
        return asyncio.run(_migrate(config))
    if action == "export":
        return asyncio.run(_export(config, options))
    networked = config.telegram_enabled or config.matrix_enabled
    if action == "console" or not networked:
        return asyncio.run(_console(config))
    return asyncio.run(_serve(config))


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
                (models.Community.id == int(name)) if name.isdigit() else (models.Community.name == name)
            )
            found = (await db.scalars(query.order_by(models.Community.id))).all()
            if len(found) != 1:
                others = ", ".join(f"{c.id} {c.name}" for c in found)
                print(f"gridbot: {'no' if not found else 'more than one'} community {name!r}"
                      + (f" ({others}: give the number)" if others else ""), file=sys.stderr)
                return 1
            actions = Actions(app=app, db=db, now=app.clock.now(), community=found[0])
            try:
                made = await export_csv(actions, options.kind, first=options.first, last=options.last)
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
    await app.start([console])
    try:
        await console.run(first)
    finally:
        await app.stop()
    return 0


async def _serve(config: config_module.Config) -> int:
    transports = []
    if config.telegram_enabled:
        from bot.transports.telegram import TelegramTransport

        transports.append(TelegramTransport(config))
    if config.matrix_enabled:
        from bot.transports.matrix import MatrixTransport

        transports.append(MatrixTransport(config))
    app = App(config, clock=Clock())
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await app.start(transports)
    logging.getLogger("gridbot").info("running: %s", ", ".join(t.name for t in transports))
    try:
        await stop.wait()
    finally:
        await app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

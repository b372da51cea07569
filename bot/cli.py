"""`gridbot run | console | migrate | check-config`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from bot import config as config_module
from bot.app import App
from bot.clock import Clock
from bot.transports.base import Transport


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gridbot", description=__doc__)
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default)")
    sub = parser.add_subparsers(dest="action")
    sub.add_parser("run", help="run every configured transport (the console if none is)")
    sub.add_parser("console", help="chat with the bot in this terminal")
    sub.add_parser("migrate", help="bring the database schema up to date")
    sub.add_parser("check-config", help="validate the configuration and show it")
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
    transports: list[Transport] = []
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

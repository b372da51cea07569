"""The peer in bench.throughput: Errbot 6's core doing what gridbot's /errand does — store an
errand in the plugin's storage and reply with its ID — driven through Errbot's own test
backend (`errbot.backends.test.TestBot`: no network, the full command path of the core).

Runs with the Python of Errbot's own virtualenv (bench.throughput creates it), never with
gridbot's, so Errbot's dependencies stay apart. Prints one JSON line:
{"commands": n, "seconds": s, "per_second": r, "sequential_per_second": r}.

    <errbot-venv>/bin/python bench/errbot_peer.py --commands 2000
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

PLUGIN = '''
import datetime
import threading
from errbot import BotPlugin, botcmd

NUMBERS = threading.Lock()  # Errbot runs commands on a thread pool: one number per errand


class Errands(BotPlugin):
    """Errands: store one, answer with its ID."""

    @botcmd
    def errand(self, msg, args):
        """Post an errand."""
        with NUMBERS:
            number = self.get("next", 0) + 1
            self["next"] = number
            self[f"E{number}"] = {
                "text": args, "by": str(msg.frm), "state": "open",
                "at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            }
        return f"新代办 E{number}：{args}"
'''
PLUG = """[Core]
Name = Errands
Module = errands

[Documentation]
Description = store an errand, reply with its ID
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--storage", default="Shelf",
                        help="Errbot storage: Shelf (on disk) or Memory")
    args = parser.parse_args()
    from errbot.backends.test import TestBot

    with tempfile.TemporaryDirectory() as tmp:
        plugins = Path(tmp) / "plugins"
        plugins.mkdir()
        (plugins / "errands.py").write_text(PLUGIN)
        (plugins / "errands.plug").write_text(PLUG)
        bot = TestBot(extra_plugin_dir=str(plugins), loglevel=logging.ERROR,
                      extra_config={"STORAGE": args.storage, "BOT_DATA_DIR": tmp})
        bot.start()
        try:
            assert bot.exec_command("!errand 预热").startswith("新代办 E1")
            # Pushed all at once, answered by Errbot's worker pool: its best throughput.
            started = time.perf_counter()
            for i in range(args.commands):
                bot.push_message(f"!errand 帮忙买菜 {i}")
            replies = [bot.pop_message(timeout=60) for _ in range(args.commands)]
            seconds = time.perf_counter() - started
            wrong = [r for r in replies if not r.startswith("新代办 E")]
            assert not wrong, wrong[:3]
            numbers = [r.split("：")[0] for r in replies]
            assert len(set(numbers)) == len(numbers), "an ID given twice"
            # One at a time, each answered before the next is written (as gridbot's figure).
            count = max(1, args.commands // 4)
            started = time.perf_counter()
            for i in range(count):
                bot.exec_command(f"!errand 帮忙买药 {i}", timeout=60)
            sequential = count / (time.perf_counter() - started)
        finally:
            bot.stop()
    print(json.dumps({"commands": args.commands, "seconds": seconds,
                      "per_second": args.commands / seconds,
                      "sequential_per_second": sequential}))


if __name__ == "__main__":
    main()

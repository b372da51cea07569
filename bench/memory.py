"""Resident memory of the bot: idle with each transport connected, and after a throughput run.

    python -m bench.memory [--commands 2000] [--settle 8]

Each configuration runs as its own process (`python -m bot.cli ...`, so nothing of this
bench counts), against the in-repo Bot API server (tests/servers/botapi.py) and a real
Synapse (tests/servers/synapse.py; skipped with a note if it cannot start). Its resident
set (VmRSS) is read from /proc once it has settled for `--settle` seconds; a bare Python
interpreter, and one that has only imported gridbot, are the yardsticks.

After the throughput run: the mix of bench.throughput (`--commands` commands in four grid
chats) in a process of its own; resident memory before and after, and the peak.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.servers.botapi import FakeBotAPI

REPO = Path(__file__).resolve().parents[1]
ADMIN = 7001


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def settled_rss(args: list[str], env: dict[str, str], settle: float,
                      stdin: int | None = None) -> float:
    child = await asyncio.create_subprocess_exec(
        *args, cwd=REPO, env=env, stdin=stdin, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(settle)
        if child.returncode is not None:
            raise RuntimeError(f"{' '.join(args)} exited with {child.returncode}")
        return rss_mb(child.pid)
    finally:
        if child.returncode is None:
            child.terminate()
        await child.wait()


def base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
    return env | {"GRIDBOT_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}


def start_synapse():
    try:
        from tests.servers.synapse import Synapse

        server = Synapse()
        server.start()
        server.register("gridbot", "gridbot-password")
        return server
    except Exception as error:  # not installed here: say so, measure the rest
        print(f"(Matrix skipped: Synapse unavailable: {error})")
        return None


AFTER_THROUGHPUT = """
import asyncio, resource, sys, tempfile
from pathlib import Path
from bench import throughput
from bench.memory import rss_mb
import os

async def main(commands):
    with tempfile.TemporaryDirectory() as tmp:
        app = await throughput.community(Path(tmp))
        before = rss_mb(os.getpid())
        mix = throughput.Mix()
        for _ in range(commands):
            await app.handle(throughput.message(*mix.next()))
        after = rss_mb(os.getpid())
        await app.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{before:.1f} {after:.1f} {peak:.1f}")

asyncio.run(main(int(sys.argv[1])))
"""


async def measure(commands: int, settle: float) -> None:
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        results: list[tuple[str, float]] = []
        env = base_env(tmp_path / "bare")
        results.append(("bare Python interpreter", await settled_rss(
            [py, "-c", "import time; time.sleep(60)"], env, 1.0)))
        results.append(("Python with gridbot imported (no transport)", await settled_rss(
            [py, "-c", "import time, bot.app, commands; time.sleep(60)"], env, 3.0)))
        results.append(("console, idle", await settled_rss(
            [py, "-m", "bot.cli", "console"], base_env(tmp_path / "console"), settle,
            stdin=subprocess.PIPE)))
        synapse = await asyncio.to_thread(start_synapse)
        try:
            async with FakeBotAPI() as api:
                api.add_user(ADMIN, "Admin", "bench_admin")
                telegram = {"GRIDBOT_TELEGRAM_TOKEN": api.token,
                            "GRIDBOT_TELEGRAM_API_URL": api.root_url,
                            "GRIDBOT_ADMINS": str(ADMIN)}
                matrix = {}
                if synapse is not None:
                    matrix = {"GRIDBOT_MATRIX_HOMESERVER": synapse.url,
                              "GRIDBOT_MATRIX_USER": f"@gridbot:{synapse.server_name}",
                              "GRIDBOT_MATRIX_PASSWORD": "gridbot-password"}
                results.append(("Telegram (long polling), idle", await settled_rss(
                    [py, "-m", "bot.cli", "run"], base_env(tmp_path / "tg") | telegram, settle)))
                if matrix:
                    results.append(("Matrix (syncing), idle", await settled_rss(
                        [py, "-m", "bot.cli", "run"], base_env(tmp_path / "mx") | matrix,
                        settle)))
                    results.append(("Telegram and Matrix in one process, idle",
                                    await settled_rss([py, "-m", "bot.cli", "run"],
                                                      base_env(tmp_path / "both") | telegram
                                                      | matrix, settle)))
        finally:
            if synapse is not None:
                await asyncio.to_thread(synapse.close)
        out = (await asyncio.to_thread(
            subprocess.run, [py, "-c", AFTER_THROUGHPUT, str(commands)], cwd=REPO,
            env=base_env(tmp_path / "throughput"), capture_output=True, text=True, check=True,
        )).stdout.split()
    for label, mb in results:
        print(f"{label:<45} {mb:6.1f} MB resident")
    before, after, peak = map(float, out)
    print(f"throughput run ({commands} mixed commands): {before:.1f} MB before, "
          f"{after:.1f} MB after, peak {peak:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--settle", type=float, default=8.0, help="seconds before reading")
    args = parser.parse_args()
    asyncio.run(measure(args.commands, args.settle))


if __name__ == "__main__":
    main()

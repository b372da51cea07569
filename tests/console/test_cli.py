"""`gridbot console` as a newcomer runs it: a subprocess reading standard input."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.harness import parse_blocks

SESSION = """\
:as admin Admin
:in hq
/community 阳光社区
/grid add g1 一网格
/grid add g2 二网格
:in g1chat
/grid link g1
/household add 3 units=2 floors=6 rooms=2
:as wang 王芳
/join worker
:as zhang 张伟
/join cadre party unit=街道办
:as liu 刘洋
/join volunteer
/grid list
"""


def run(stdin: str, cwd, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *(args or ("console",))], input=stdin, text=True,
        capture_output=True, cwd=cwd, timeout=120,
        env={**os.environ, "PYTHONPATH": os.getcwd(), **(env or {})},
    )


def test_pasted_readme_session_works_and_exits_cleanly(tmp_path):
    result = run(SESSION, tmp_path)
    assert result.returncode == 0, result.stderr
    blocks = parse_blocks(result.stdout)
    assert blocks.chats()[:3] == ["hq", "hq", "hq"]
    assert "g1 一网格：住户 24，成员 3，第 1 轮排查 0/24（0%）" in blocks.texts("g1chat")[-1]
    assert (tmp_path / "gridbot.db").exists()
    # The same data is there on the next run.
    again = run(":in g1chat\n:as liu\n/grid list\n", tmp_path)
    assert "成员 3" in parse_blocks(again.stdout).text("g1chat")


def test_run_without_configuration_opens_the_console(tmp_path):
    result = run(":as admin\n/help\n", tmp_path, "run", env={"GRIDBOT_TELEGRAM_TOKEN": "",
                                                            "GRIDBOT_MATRIX_HOMESERVER": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[hq]\n")


def test_first_line_clock_sets_time_before_start(tmp_path):
    result = run(":clock 2026-02-10T08:00\n/community 社区\n/grid add g1 一\n:in c\n/grid link g1\n"
                 "/join\n:dm\n/me\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[dm:admin]" in result.stdout


def test_bad_configuration_is_reported_not_crashed(tmp_path):
    result = run("", tmp_path, "check-config", env={"GRIDBOT_TZ": "Mars/Base"})
    assert result.returncode == 2
    assert "GRIDBOT_TZ" in result.stderr and "Traceback" not in result.stderr


def test_bad_directive_is_explained_and_input_goes_on(tmp_path):
    result = run(":wait soon\n:frobnicate\n/help\n", tmp_path)
    assert result.returncode == 0
    assert "bad directive :wait soon" in result.stderr and "unknown directive" in result.stderr
    assert "[hq]" in result.stdout

"""The deployment files in deploy/ name commands and packages that exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from bot import cli

REPO = Path(__file__).resolve().parents[2]


def cli_actions() -> set[str]:
    source = (REPO / "bot" / "cli.py").read_text(encoding="utf-8")
    return set(re.findall(r'sub\.add_parser\(\s*"([a-z-]+)"', source))


def test_the_systemd_unit_runs_commands_the_cli_has():
    unit = (REPO / "deploy" / "gridbot.service").read_text(encoding="utf-8")
    used = re.findall(r"^Exec\w+=\S*/gridbot (\S+)", unit, re.MULTILINE)
    assert set(used) == {"migrate", "check", "run"} <= cli_actions()
    codes = re.search(r"^RestartPreventExitStatus=(.*)$", unit, re.MULTILINE)[1].split()
    assert codes == [str(cli.EXIT_CONFIG), str(cli.EXIT_RUNNING)]


def test_the_container_image_holds_every_package():
    containerfile = (REPO / "deploy" / "Containerfile").read_text(encoding="utf-8")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    top = {p.split(".")[0] for p in pyproject["tool"]["setuptools"]["packages"]}
    copied = set(re.findall(r"^COPY (\w+) \w+$", containerfile, re.MULTILINE))
    assert top <= copied
    assert 'CMD ["run"]' in containerfile and '"gridbot", "check"' in containerfile

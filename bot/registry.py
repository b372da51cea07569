"""The declared commands, periodic jobs and event hooks of every domain module.

A domain module declares what it offers with these decorators; the app and dispatcher
find it here. Nothing in this file knows any domain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bot.args import Signature, signature_of
from bot.roles import Role, Where


@dataclass
class Command:
    group: str
    sub: str | None
    function: Callable[..., Awaitable[Any]]
    role: Role
    where: Where
    aliases: tuple[str, ...]
    signature: Signature
    role_grid: str | None = None
    default: bool = False
    confirm: bool = False
    confirmable: bool = False
    sub_aliases: tuple[str, ...] = ()  # other names of the sub-command (`/need 取消`)

    @property
    def name(self) -> str:
        return f"{self.group} {self.sub}" if self.sub else self.group

    @property
    def usage(self) -> str:
        return f"/{self.name} {self.signature.usage()}".strip()

    @property
    def summary(self) -> str:
        doc = self.function.__doc__
        return doc.strip().splitlines()[0] if doc else ""


@dataclass
class Job:
    name: str
    every: timedelta
    function: Callable[..., Awaitable[Any]]
    # For the manual clock only (bot/scheduler.py): when the job next has work, or that
    # running it once per jump is enough.
    due: Callable[..., Awaitable[Any]] | None = None
    catch_up: bool = False


@dataclass
class DigestSection:
    """One section of the daily digest, declared by the domain that owns the data."""

    name: str
    order: int
    function: Callable[..., Awaitable[Any]]
    template: str
    scope: str = "grid"  # or "community": gathered once, for the whole-community digest


@dataclass
class Registry:
    groups: dict[str, dict[str | None, Command]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)
    digest_sections: list[DigestSection] = field(default_factory=list)
    hooks: dict[str, list[Callable[..., Awaitable[Any]]]] = field(default_factory=dict)
    hand_backs: list[Callable[..., Awaitable[Any]]] = field(default_factory=list)

    def add(self, cmd: Command) -> None:
        subs = self.groups.setdefault(cmd.group, {})
        if cmd.sub in subs:
            raise ValueError(f"command /{cmd.name} declared twice")
        for alias in cmd.sub_aliases:
            if alias.lower() in subs or any(alias.lower() in c.sub_aliases for c in subs.values()):
                raise ValueError(f"/{cmd.group} {alias} names two sub-commands")
        subs[cmd.sub] = cmd
        for alias in cmd.aliases:
            self.aliases[alias.lower()] = cmd.group

    def commands(self) -> list[Command]:
        return [cmd for subs in self.groups.values() for cmd in subs.values()]

    def group(self, name: str) -> dict[str | None, Command]:
        """The commands of `/name`, by name or alias, in any letter case: the one lookup
        used for running, /help and suggestions."""
        key = name.lower()
        return self.groups.get(key) or self.groups.get(self.aliases.get(key, ""), {})

    def find(self, name: str, args: str) -> tuple[Command, str] | None:
        """The command for `/name args`, and the arguments left once a sub-command is taken."""
        group = self.group(name)
        if not group:
            return None
        first, _, rest = args.strip().partition(" ")
        if first and first.lower() in group:
            return group[first.lower()], rest
        for cmd in group.values():
            if first and first.lower() in cmd.sub_aliases:
                return cmd, rest
        for cmd in group.values():
            if cmd.sub is None or cmd.default:
                return cmd, args
        return None

    def group_usage(self, name: str) -> list[str]:
        return [cmd.usage for cmd in self.group(name).values()]

    def names(self) -> dict[str, str]:
        """Every name and alias a command answers to, with its group's name."""
        return {**{alias: group for alias, group in self.aliases.items()},
                **{group: group for group in self.groups}}


REGISTRY = Registry()


def command(
    name: str,
    *,
    role: Role = Role.RESIDENT,
    where: Where = Where.ANY,
    aliases: tuple[str, ...] = (),
    default: bool = False,
    role_grid: str | None = None,
    confirm: bool = False,
    confirmable: bool = False,
    sub_aliases: tuple[str, ...] = (),
):
    """Declares a command. `name` may hold a sub-command (`"grid add"`); `default` marks the
    sub-command run when none is named; `role_grid` names the argument whose grid the role
    is checked against (for commands that act on a grid other than this chat's); `confirm`
    asks before running a command that cannot easily be taken back; `confirmable` lets the
    command itself ask, depending on its arguments (`ctx.confirm(...)`); `sub_aliases` are
    other names of a sub-command, e.g. Chinese ones (`/need 取消 N3` for `/need cancel N3`),
    where `aliases` name the whole command (`/需求`)."""

    group, _, sub = name.partition(" ")

    def decorate(function):
        REGISTRY.add(
            Command(
                group=group,
                sub=sub or None,
                function=function,
                role=role,
                where=where,
                aliases=aliases,
                signature=signature_of(function),
                role_grid=role_grid,
                default=default,
                confirm=confirm,
                confirmable=confirmable,
                sub_aliases=tuple(a.lower() for a in sub_aliases),
            )
        )
        return function

    return decorate


def job(every: timedelta, *, due=None, catch_up: bool = False):
    """Declares a periodic job: `async def f(jc: JobContext)`, run every `every`.

    Both options only change how the console's manual clock jumps (the rule is in
    bot/scheduler.py); the real clock runs the job every `every` regardless.
    `due`: `async def g(jc: JobContext) -> datetime | None`, the earliest moment (at or after
    `jc.now`) at which a run would write or send anything, given the database as it is; None
    when nothing is pending. It may be early (a wasted run), never late (a missed moment).
    `catch_up=True`: what a run does does not depend on when it runs, so one run per jump does
    the work of them all."""

    def decorate(function):
        REGISTRY.jobs.append(
            Job(function.__module__ + "." + function.__name__, every, function, due, catch_up)
        )
        return function

    return decorate


def digest_section(name: str, *, order: int, template: str, scope: str = "grid"):
    """Declares a section of the daily digest. The function gathers one grid's unfinished
    items (`scope="community"`: the community's, once, for the whole-community digest only);
    `template` renders them (see commands/digest.py for the contract)."""

    def decorate(function):
        REGISTRY.digest_sections.append(DigestSection(name, order, function, template, scope))
        REGISTRY.digest_sections.sort(key=lambda s: s.order)
        return function

    return decorate


def on(event: str):
    """Declares a hook for an app event (`startup`, `community_changed`)."""

    def decorate(function):
        REGISTRY.hooks.setdefault(event, []).append(function)
        return function

    return decorate


def hand_back(function):
    """Declares what a domain does when a person stops working in a grid (`/leave`, or a
    role taken away): `async def f(actions: Actions, person: Person, grid: Grid) -> None`,
    run inside that command's transaction, e.g. reopening their claimed errands. Afterwards
    nothing of that grid's private work may reach the person."""
    REGISTRY.hand_backs.append(function)
    return function

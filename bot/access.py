"""The one access rule: may this person use this command in this chat?

`refusal(cmd, seat)` answers from the command's declared access (`role=`, `where=`,
`role_grid=` on `@command`) and the caller's seat (role here, highest role in the community,
kind of chat). The dispatcher raises what it returns; `/help`, `/start` and Telegram's
command menus ask the same function as a dry run (`allowed`), so a command is listed exactly
where running it would not be refused for who or where one is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from bot.errors import Refused
from bot.roles import Role, Where

if TYPE_CHECKING:
    from bot.registry import Command


class Place(StrEnum):
    """The kind of chat a message comes from."""

    DIRECT = "direct"  # a direct chat with the bot
    HQ = "hq"  # a community's HQ chat
    GRID = "grid"  # a group chat linked to a grid
    GROUP = "group"  # a group chat linked to nothing yet


@dataclass(frozen=True)
class Seat:
    """Who is asking, and where, as far as access goes."""

    role: Role  # the role here (in this grid's chat: in that grid)
    place: Place
    community: bool  # a community applies here (its HQ, a grid chat, or a direct chat)
    top_role: Role | None = None  # the highest role anywhere in the community

    @property
    def best_role(self) -> Role:
        return max(self.role, self.top_role or Role.RESIDENT)


def _where_ok(where: Where, seat: Seat) -> bool:
    place = seat.place
    return {
        Where.ANY: True,
        Where.GROUP: place is not Place.DIRECT,
        Where.DIRECT: place is Place.DIRECT,
        Where.GRID: place is Place.GRID,
        Where.HQ: place is Place.HQ,
        Where.COMMUNITY: seat.community and place is not Place.GROUP,
        Where.PRIVATE: seat.community and place in (Place.DIRECT, Place.HQ),
    }[where]


def refusal(cmd: Command, seat: Seat, *, dry_run: bool = False) -> Refused | None:
    """Why `cmd` may not run for `seat`, or None. A command that names its grid
    (`role_grid`) is checked against that grid once its arguments are read; as a dry run it
    is allowed to whoever holds the role somewhere in the community."""
    if not _where_ok(cmd.where, seat):
        return Refused(where=cmd.where)
    role = seat.best_role if cmd.role_grid is not None and dry_run else seat.role
    if cmd.role_grid is not None and not dry_run:
        return None  # decided by `grid_refusal` once the grid is known
    if role < cmd.role:
        if seat.place is not Place.DIRECT and (seat.top_role or Role.RESIDENT) >= cmd.role:
            # They hold the role, in their own grid: that is where it works (for a command of
            # direct chats and the HQ chat, in their direct chat, where their grid applies).
            return Refused(where=Where.DIRECT if cmd.where is Where.PRIVATE else Where.GRID)
        joined = seat.place is Place.GRID and role is Role.RESIDENT and cmd.role is Role.MEMBER
        return Refused(cmd.role, join=joined)
    return None


def grid_refusal(cmd: Command, role_in_grid: Role) -> Refused | None:
    """For a command that names its grid: the caller's role in that grid must do."""
    return Refused(cmd.role) if role_in_grid < cmd.role else None


def allowed(cmd: Command, seat: Seat) -> bool:
    """The dry run: would `cmd` be refused for who or where one is?"""
    return refusal(cmd, seat, dry_run=True) is None

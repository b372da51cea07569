"""Roles, from least to most allowed, and where a command may be used."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Role(IntEnum):
    RESIDENT = 0
    MEMBER = 1
    LEADER = 2
    SECRETARY = 3
    ADMIN = 4

    @property
    def key(self) -> str:
        return self.name.lower()


class Where(StrEnum):
    """The kind of chat a command needs."""

    ANY = "any"
    GRID = "grid"  # a chat linked to a grid
    HQ = "hq"  # the community's HQ chat
    COMMUNITY = "community"  # any chat of a community: its HQ, a grid chat, or a member's DM
    GROUP = "group"  # any group chat, linked or not
    DIRECT = "direct"  # a direct chat with the bot
    PRIVATE = "private"  # a direct chat with the bot, or the community's HQ chat

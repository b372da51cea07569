"""Household codes: `building-unit-room`, however they were typed."""

from __future__ import annotations

import re

_SEPARATED = re.compile(r"(\w+?)[-－—_/\.](\w+?)[-－—_/\.](\w+)")
_CHINESE = re.compile(r"(\w+?)(?:号楼|栋|幢|号|楼)(\w+?)(?:单元|门)(\w+?)(?:室|号|户)?")


def normalise_household(text: str) -> str | None:
    """`3栋2单元101室`, `3-2-101`, `3/2/101` → `3-2-101`; None if it is no household code."""
    text = text.strip().replace(" ", "")
    for pattern in (_SEPARATED, _CHINESE):
        match = pattern.fullmatch(text)
        if match:
            parts = [p.upper() for p in match.groups()]
            if all(re.fullmatch(r"[0-9A-Za-z]{1,8}", p) for p in parts):
                return "-".join(parts)
    return None


def building_of(code: str) -> str:
    return code.split("-", 1)[0]


def pattern_codes(building: str, units: int, floors: int, rooms: int) -> list[str]:
    """Every household of a building: `3 units=2 floors=6 rooms=2` → 3-1-101 … 3-2-602."""
    return [
        f"{building}-{unit}-{floor}{room:02d}"
        for unit in range(1, units + 1)
        for floor in range(1, floors + 1)
        for room in range(1, rooms + 1)
    ]

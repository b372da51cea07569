"""Who may see residents' health details: the one rule (README, "How it is built").

A key person's name, reason, temperatures and symptoms, and a fever screening's details,
show only to that key person's watcher (or the screener), the leaders of its grid, the
community's secretaries and installation admins — and only in a direct chat or in the
community's HQ chat. Everyone else, anywhere, direct chats included, sees IDs and household
codes.

Every message is rendered for its reader (`Viewer`); templates mark health values with the
`private` filter and name what they are about (`{{ kp.name | private(kp) }}`), and `may_see`
decides. Nothing else in the code decides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Viewer:
    """Who will read a message, as far as health details are concerned.

    A group chat other than an HQ chat is `Viewer()`: it sees nothing private. The HQ chat of
    a community sees that community's details. A direct chat is its person.
    """

    person_id: int | None = None
    admin: bool = False
    hq_of: int | None = None  # the community whose HQ chat this is
    secretary_of: frozenset[int] = frozenset()  # community ids
    leader_of: frozenset[int] = frozenset()  # grid ids


PUBLIC = Viewer()


@dataclass(frozen=True)
class Subject:
    """What a health detail is about: its community, its grid, and the people it belongs to
    by their task (the key person's watcher, the screener)."""

    community_id: int
    grid_id: int
    owners: frozenset[int]


def subject_of(thing: Any) -> Subject:
    """The subject of a key person, a follow-up (its key person) or a screening."""
    thing = getattr(thing, "kp", thing)  # a FollowUp carries its key person
    if hasattr(thing, "watcher_id"):  # a key person
        owners = {thing.watcher_id}
    elif hasattr(thing, "by_id"):  # a screening (the screener saw it)
        owners = {thing.by_id}
    else:
        raise TypeError(f"no health subject in {type(thing).__name__}")
    return Subject(thing.community_id, thing.grid_id, frozenset(o for o in owners if o))


def may_see(viewer: Viewer | None, thing: Any) -> bool:
    """Whether `viewer` may read the health details of `thing`."""
    if viewer is None or thing is None:
        return False
    about = subject_of(thing)
    if viewer.hq_of is not None:
        return viewer.hq_of == about.community_id
    if viewer.person_id is None:
        return False  # a group chat that is not an HQ chat
    return (
        viewer.admin
        or about.community_id in viewer.secretary_of
        or about.grid_id in viewer.leader_of
        or viewer.person_id in about.owners
    )

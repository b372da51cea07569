"""The one error tree. Commands and converters raise these anywhere; only the dispatcher
turns them into replies (`bot/dispatch.py`, `Dispatcher._explain`), so every refusal and
every usage line looks the same whichever command raised it.

    GridbotError
    ├── ArgError   a word that could not be read          → what was wrong + the usage line
    ├── Refused    the caller may not do this here         → the role or the kind of chat needed
    ├── Reject     a clear "no" about the thing itself     → the command's own template
    └── Confirm    not a failure: the command asks first   → the question, with a button

Each rolls back what the command wrote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.roles import Role, Where


class GridbotError(Exception):
    """Something the person is told about; nothing the command wrote is kept."""


class ArgError(GridbotError):
    """A word that could not be read; `template` names `args/<template>` for the message."""

    def __init__(self, template: str, /, **values: object) -> None:
        super().__init__(template)
        self.template = template
        self.values = values


class Refused(GridbotError):
    """The caller lacks `role`, or the command needs another kind of chat (`where`), or the
    caller has not joined yet (`join`)."""

    def __init__(
        self, role: Role | None = None, where: Where | None = None, *, join: bool = False
    ) -> None:
        super().__init__(role, where)
        self.role = role
        self.where = where
        self.join = join


class Reject(GridbotError):
    """A clear 'no' for the person: rolls back the command and replies with `template`."""

    def __init__(self, template: str, /, **values: object) -> None:
        super().__init__(template)
        self.template = template
        self.values = values


class Confirm(GridbotError):
    """Not a failure: the command asks before going on (`Context.confirm`). Nothing is kept;
    the question (`template`) carries a button that runs the command again, confirmed."""

    def __init__(self, template: str, /, **values: object) -> None:
        super().__init__(template)
        self.template = template
        self.values = values

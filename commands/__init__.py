"""One module per domain; importing this package declares every command, job and hook."""

from commands import (  # noqa: F401
    care,
    digest,
    errands,
    help,
    history,
    keypersons,
    members,
    publicity,
    screening,
    setup,
    shifts,
)

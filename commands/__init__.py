"""One module per domain; importing this package declares every command, job and hook."""

from commands import (  # noqa: F401
    care,
    digest,
    errands,
    export,
    help,
    history,
    keypersons,
    members,
    publicity,
    records,
    screening,
    setup,
    shifts,
    supplies,
)

"""One module per domain; importing this package declares every command, job and hook."""

from commands import help, members, setup  # noqa: F401

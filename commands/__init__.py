"""One module per domain; importing this package declares every command, job and hook."""

from commands import digest, errands, help, keypersons, members, publicity, screening, setup  # noqa: F401

"""A real, throwaway PostgreSQL server for tests.

`Postgres` runs ``initdb`` into a temporary directory and starts ``postgres`` on a
free port bound to 127.0.0.1 only, tuned for speed rather than durability. The
whole cluster is deleted by `Postgres.stop`.

PostgreSQL refuses to run as root, so when the tests run as root the server runs
as the ``postgres`` system account if there is one, else as ``gridbot-test``
(created with useradd on first use; ``scripts/install-postgres.sh`` creates it
up front).

Fixtures (import them into a test module or conftest to use them):

* ``postgres`` (session): the started server.
* ``postgres_url`` (function): the SQLAlchemy URL of a fresh database per test.

When the server cannot be started the fixtures skip, except when ``$CI`` is
non-empty: then they fail, so CI never silently skips the database tests.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, TypeVar

import asyncpg
import pytest

__all__ = [
    "Postgres",
    "PostgresUnavailable",
    "find_bindir",
    "postgres",
    "postgres_url",
]

T = TypeVar("T")

HOST = "127.0.0.1"
# Database superuser created by initdb; fixed so URLs do not depend on the OS account.
SUPERUSER = "postgres"
# OS accounts the server may run as when we are root, in order of preference.
SERVER_ACCOUNTS = ("postgres", "gridbot-test")
DEBIAN_PREFIX = Path("/usr/lib/postgresql")

# Durability is worthless for a cluster deleted after the run; these make it fast.
TEST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}

# Lower-case only, so the quoted name we create and the bare name in the URL agree.
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_LOG_TAIL_LINES = 30


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started on this machine (missing binaries, start failure...)."""


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``, or None.

    ``initdb`` on PATH wins (an explicit choice); otherwise the newest
    Debian-style ``/usr/lib/postgresql/<version>/bin``.
    """
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        # Resolve symlinks such as /usr/local/bin/initdb: `postgres` lives beside the target.
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(DEBIAN_PREFIX.glob("*/bin"), key=_version_key, reverse=True)
    return next((bindir for bindir in candidates if _has_binaries(bindir)), None)


def _has_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / exe, os.X_OK) for exe in ("initdb", "postgres"))


def _version_key(bindir: Path) -> tuple[int, ...]:
    # "/usr/lib/postgresql/9.6/bin" -> (9, 6); numeric so that 10 sorts above 9.6.
    try:
        return tuple(int(part) for part in bindir.parent.name.split("."))
    except ValueError:
        return ()


def _server_account() -> pwd.struct_passwd | None:
    """The account to run the server as, or None to run it as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in SERVER_ACCOUNTS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    fallback = SERVER_ACCOUNTS[-1]
    result = subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            fallback,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise PostgresUnavailable(
            f"running as root and no non-root account to run postgres as; "
            f"useradd {fallback} failed: {result.stderr.strip()}"
        )
    return pwd.getpwnam(fallback)


def _free_port() -> int:
    # The kernel picks an unused port; there is a small window before postgres
    # binds it, which `Postgres.start` covers by retrying on a bind failure.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-_LOG_TAIL_LINES:])


def _check_name(name: str) -> str:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(
            f"invalid database name {name!r}: use 1-63 of [a-z0-9_], not starting with a digit"
        )
    return name


class Postgres:
    """A throwaway PostgreSQL cluster. Use `start`/`stop`, or as a context manager."""

    host = HOST
    user = SUPERUSER

    def __init__(
        self,
        *,
        bindir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self._bindir = bindir
        self._settings = {**TEST_SETTINGS, **(settings or {})}
        self._startup_timeout = startup_timeout
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        #: Seconds `start` took (initdb + server start-up), for curiosity and tuning.
        self.startup_seconds: float | None = None

    # -- lifecycle --------------------------------------------------------

    def start(self) -> Postgres:
        """Create and start the cluster; raise `PostgresUnavailable` if impossible."""
        if self._proc is not None:
            raise RuntimeError("already started")
        began = time.monotonic()
        bindir = self._bindir or find_bindir()
        if bindir is None:
            raise PostgresUnavailable(
                f"no PostgreSQL binaries: initdb is neither on PATH nor in "
                f"{DEBIAN_PREFIX}/*/bin (run scripts/install-postgres.sh)"
            )
        if not _has_binaries(bindir):
            raise PostgresUnavailable(f"no executable initdb and postgres in {bindir}")
        account = _server_account()
        self._tmp = Path(tempfile.mkdtemp(prefix="gridbot-pg-"))
        atexit.register(self.stop)  # don't leak a server if the fixture teardown never runs
        try:
            if account is not None:
                # The server account must own everything it writes: data dir, sockets.
                os.chown(self._tmp, account.pw_uid, account.pw_gid)
            self._initdb(bindir, account)
            self._launch(bindir, account)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Fast shutdown (open sessions are rolled back), then delete the cluster. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # SIGINT = "fast" shutdown mode
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # "Immediate" shutdown: the postmaster SIGQUITs its backends. If even that
                # hangs, kill it; orphaned backends exit once they notice it is gone.
                proc.send_signal(signal.SIGQUIT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._port = None
        atexit.unregister(self.stop)

    def restart(self, down_for: float = 0.0) -> None:
        """Fast shutdown (every session is cut), `down_for` seconds down, then the server
        again on the same port with the same data: a restart or failover as clients see it."""
        if self._proc is None:
            raise RuntimeError("server not started")
        proc, self._proc = self._proc, None
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        time.sleep(down_for)
        self._launch(self._bindir or find_bindir(), _server_account(), port=self._port)

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases --------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    def url(self, name: str) -> str:
        """SQLAlchemy async URL of database `name` (which need not exist yet)."""
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{_check_name(name)}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database `name` (optionally cloned from `template`) and return its URL.

        Cloning a template that already holds the schema is much cheaper than
        re-running migrations for every test.
        """
        sql = f'CREATE DATABASE "{_check_name(name)}"'
        if template is not None:
            sql += f' TEMPLATE "{_check_name(template)}"'
        self._execute(sql)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, disconnecting any sessions still using it."""
        self._execute(f'DROP DATABASE IF EXISTS "{_check_name(name)}" WITH (FORCE)')

    # -- internals --------------------------------------------------------

    def _env(self) -> dict[str, str]:
        # PG* variables (PGDATA, PGPORT, ...) from the caller's shell must not leak in;
        # the C locale keeps server messages in English for the errors we report.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    @staticmethod
    def _as(account: pwd.struct_passwd | None) -> dict[str, Any]:
        # Popen switches uid/gid in the child (no preexec_fn, which isn't thread-safe),
        # and drops root's supplementary groups.
        if account is None:
            return {}
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _initdb(self, bindir: Path, account: pwd.struct_passwd | None) -> None:
        assert self._tmp is not None
        result = subprocess.run(
            [
                str(bindir / "initdb"),
                f"--pgdata={self._tmp / 'data'}",
                f"--username={SUPERUSER}",
                "--encoding=UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=trust",
                "--no-sync",  # nothing here needs to survive a crash
            ],
            cwd=self._tmp,
            env=self._env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            check=False,
            **self._as(account),
        )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"initdb failed (exit {result.returncode}):\n{_tail(result.stdout)}"
            )

    def _launch(
        self, bindir: Path, account: pwd.struct_passwd | None, port: int | None = None
    ) -> None:
        assert self._tmp is not None
        sockets = self._tmp / "sockets"
        sockets.mkdir(exist_ok=True)
        if account is not None:
            os.chown(sockets, account.pw_uid, account.pw_gid)
        settings = {
            **self._settings,
            "listen_addresses": HOST,
            "unix_socket_directories": str(sockets),
        }
        log_path = self._tmp / "postgres.log"
        fixed = port
        for attempt in range(1, 4):
            port = fixed or _free_port()
            with log_path.open("wb") as log:  # the child keeps its own copy of the fd
                self._proc = subprocess.Popen(
                    [str(bindir / "postgres"), "-D", str(self._tmp / "data"), "-p", str(port)]
                    + [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")],
                    cwd=self._tmp,
                    env=self._env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # A Ctrl-C meant for pytest must not shut the server down under the
                    # teardown code; stop() shuts it down itself.
                    start_new_session=True,
                    **self._as(account),
                )
            self._port = port
            try:
                self._wait_until_ready(log_path)
                return
            except PostgresUnavailable:
                log_text = log_path.read_text(errors="replace")
                port_taken = "could not bind" in log_text  # lost the race for the free port
                self._proc.wait(timeout=30)  # wait_until_ready only gives up once it has exited
                self._proc = None
                if not (port_taken and attempt < 3 and not fixed):
                    raise

    def _wait_until_ready(self, log_path: Path) -> None:
        assert self._proc is not None and self._tmp is not None
        deadline = time.monotonic() + self._startup_timeout
        data_dir = self._tmp / "data"
        while True:
            if self._proc.poll() is not None:
                raise PostgresUnavailable(
                    f"postgres exited with status {self._proc.returncode}:\n"
                    f"{_tail(log_path.read_text(errors='replace'))}"
                )
            try:
                # Checking the data directory proves we reached *our* server and not
                # someone else's that happens to hold the port.
                served = self._fetchval("SELECT current_setting('data_directory')")
                if os.path.samefile(str(served), data_dir):
                    return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pass  # not listening yet, or "the database system is starting up"
            if time.monotonic() > deadline:
                self._proc.kill()
                self._proc.wait()
                raise PostgresUnavailable(
                    f"postgres did not accept connections within {self._startup_timeout:.0f}s:\n"
                    f"{_tail(log_path.read_text(errors='replace'))}"
                )
            time.sleep(0.05)

    def _execute(self, sql: str) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            await conn.execute(sql)

        self._with_connection(run)

    def _fetchval(self, sql: str) -> object:
        async def run(conn: asyncpg.Connection) -> object:
            return await conn.fetchval(sql)

        return self._with_connection(run)

    def _with_connection(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async def main() -> T:
            conn = await asyncpg.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                database="postgres",
                ssl=False,
                timeout=5,
            )
            try:
                return await work(conn)
            finally:
                await conn.close()

        # A private thread and event loop: this works from plain code, sync fixtures
        # and from inside an already running event loop (async tests/fixtures) alike.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, main()).result()


# -- pytest fixtures ------------------------------------------------------


def _unavailable(reason: str) -> NoReturn:
    # In CI a missing database must be an error: a skipped suite looks green.
    if os.environ.get("CI"):
        pytest.fail(
            f"PostgreSQL is required in CI ($CI is set) but unavailable: {reason}", pytrace=False
        )
    pytest.skip(f"PostgreSQL unavailable: {reason}")


def _unique_database_name(test_name: str) -> str:
    # Readable in logs/psql, unique across tests and parametrizations.
    slug = re.sub(r"[^a-z0-9]+", "_", test_name.lower()).strip("_")[:40]
    return f"t_{slug}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server shared by the whole test session."""
    server = Postgres()
    try:
        server.start()
    except PostgresUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres: Postgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh, empty database for this test (``postgresql+asyncpg://...``)."""
    name = _unique_database_name(request.node.name)
    url = postgres.create_database(name)
    yield url
    # Each database costs ~7 MB on disk; dropping keeps long runs from filling /tmp.
    postgres.drop_database(name)

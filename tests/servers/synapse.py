"""A real Synapse homeserver for integration tests.

Synapse lives in its own virtualenv (see ``scripts/install-synapse.sh``) so its
dependencies never meet the bot's. Each :class:`Synapse` gets a temp directory
holding its config, signing key, SQLite database, media and log, and listens on
a free port on 127.0.0.1 (client API only, no federation).

Pytest fixtures provided here: ``synapse`` (one shared server per session) and
``synapse_factory`` (dedicated servers, e.g. with a low message rate limit).
Import them into a test module or conftest, or list this module in
``pytest_plugins``. If Synapse is not installed or will not start, they skip —
unless ``CI`` is set, in which case they fail so CI never skips silently.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import pytest
from nio import AsyncClient, AsyncClientConfig, LoginResponse

SERVER_NAME = "localhost"
START_TIMEOUT = 60.0  # seconds until /_matrix/client/versions must answer
STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL
PORT_ATTEMPTS = 3  # a new server tries this many free ports

# Every rate limiter Synapse knows (dotted keys nest), opened wide by default so
# tests never trip over them by accident. Unknown keys are ignored by Synapse.
_RATE_LIMITERS = (
    "rc_message",
    "rc_registration",
    "rc_registration_token_validity",
    "rc_login.address",
    "rc_login.account",
    "rc_login.failed_attempts",
    "rc_admin_redaction",
    "rc_joins.local",
    "rc_joins.remote",
    "rc_joins_per_room",
    "rc_key_requests",
    "rc_3pid_validation",
    "rc_invites.per_room",
    "rc_invites.per_user",
    "rc_invites.per_issuer",
    "rc_third_party_invite",
    "rc_media_create",
    "rc_presence.per_user",
    "rc_delayed_event_mgmt",
    "rc_room_creation",
    "rc_reports",
    "rc_user_directory",
    "rc_profile",
)
_GENEROUS_LIMIT = {"per_second": 10_000, "burst_count": 100_000}

# Run by the venv's python: merge JSON overrides (stdin) into the YAML config.
# PyYAML comes with Synapse there; the test process need not have it.
_MERGE_CONFIG_SCRIPT = """
import json, sys, yaml
path = sys.argv[1]
with open(path) as f:
    config = yaml.safe_load(f)
config.update(json.load(sys.stdin))
with open(path, "w") as f:
    yaml.safe_dump(config, f, sort_keys=False)
"""


class SynapseError(RuntimeError):
    """Synapse is not installed, failed to start, or refused a request."""


def synapse_venv() -> Path:
    """Synapse's virtualenv, as chosen by scripts/install-synapse.sh."""
    configured = os.environ.get("GRIDBOT_SYNAPSE_VENV")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "gridbot" / "synapse-venv"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"({path.name} does not exist)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path.name} is empty)"


def _rate_limits(rc_message: tuple[float, int] | None) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    for dotted in _RATE_LIMITERS:
        *parents, leaf = dotted.split(".")
        node = limits
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = dict(_GENEROUS_LIMIT)
    if rc_message is not None:
        per_second, burst_count = rc_message
        limits["rc_message"] = {"per_second": per_second, "burst_count": burst_count}
    return limits


class Synapse:
    """One Synapse process with its own port, config and data in a temp dir.

    ``start()`` generates the config the first time; ``stop()`` ends the process
    but keeps the data so ``restart()`` brings the same server back on the same
    port; ``close()`` stops it and deletes the temp dir. As a context manager it
    starts on enter and closes on exit.
    """

    def __init__(
        self,
        rc_message: tuple[float, int] | None = None,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        """``rc_message=(per_second, burst_count)`` sets a (low) message rate
        limit; ``extra_config`` top-level keys override the generated config."""
        self.venv = synapse_venv()
        self.python = self.venv / "bin" / "python"
        self.server_name = SERVER_NAME
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(tempfile.mkdtemp(prefix="gridbot-synapse-"))
        self.config_path = self.workdir / "hs.yaml"
        self.log_path = self.workdir / "homeserver.log"
        self.console_path = self.workdir / "console.log"  # Synapse's stdout+stderr
        self._registration_secret = secrets.token_hex(32)
        self._rc_message = rc_message
        self._extra_config = dict(extra_config or {})
        self._process: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)  # no stray server or temp dir if teardown never runs

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Start Synapse and wait until its client API answers."""
        if self.running:
            return
        if not self.python.exists():
            raise SynapseError(
                f"no Synapse virtualenv at {self.venv}; run scripts/install-synapse.sh"
            )
        fresh = not self.config_path.exists()
        if fresh:
            self._generate_config()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self._launch()
                return
            except SynapseError:
                self.stop()
                # Something may have taken the port since we picked it: a new
                # server moves to another one, a restarted one must keep its own.
                if not (fresh and attempt < PORT_ATTEMPTS and self._port_was_taken()):
                    raise
                self.port = _free_port()
                self.url = f"http://127.0.0.1:{self.port}"
                self._merge_config({"listeners": self._listeners()})

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL if it lingers); keep the data."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and delete the temp dir with all data and logs."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.close)

    @property
    def running(self) -> bool:
        """Whether the Synapse process is alive (it may still be starting)."""
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Synapse:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- users ---------------------------------------------------------------

    def register(self, username: str, password: str, admin: bool = False) -> str:
        """Create a user via the shared-secret admin API; return its user ID."""
        endpoint = "/_synapse/admin/v1/register"
        nonce = self._request("GET", endpoint)["nonce"]
        # HMAC-SHA1 over the fields joined by NUL, keyed by the shared secret.
        signed = "\x00".join((nonce, username, password, "admin" if admin else "notadmin"))
        mac = hmac.new(self._registration_secret.encode(), signed.encode(), hashlib.sha1)
        reply = self._request(
            "POST",
            endpoint,
            {
                "nonce": nonce,
                "username": username,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        return str(reply["user_id"])

    # -- internals -------------------------------------------------------------

    def _generate_config(self) -> None:
        generate = [
            str(self.python), "-m", "synapse.app.homeserver",
            "--server-name", self.server_name,
            "--config-path", str(self.config_path),
            "--data-directory", str(self.workdir),
            "--generate-config",
            "--report-stats=no",
        ]  # fmt: skip
        self._run(generate)

        log_config = self.workdir / "log.yaml"
        log_config.write_text(  # JSON is valid YAML
            json.dumps(
                {
                    "version": 1,
                    "formatters": {
                        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
                    },
                    "handlers": {
                        "file": {
                            "class": "logging.FileHandler",
                            "formatter": "plain",
                            "filename": str(self.log_path),
                        }
                    },
                    "root": {"level": "WARNING", "handlers": ["file"]},
                    "disable_existing_loggers": False,
                }
            )
        )
        overrides: dict[str, Any] = {
            "listeners": self._listeners(),
            "database": {
                "name": "sqlite3",
                "args": {"database": str(self.workdir / "homeserver.db")},
            },
            "media_store_path": str(self.workdir / "media_store"),
            "log_config": str(log_config),
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "report_stats": False,
            "enable_metrics": False,
            "enable_registration": False,
            "registration_shared_secret": self._registration_secret,
            "bcrypt_rounds": 4,
            "presence": {"enabled": False},
            **_rate_limits(self._rc_message),
            **self._extra_config,
        }
        self._merge_config(overrides)

    def _listeners(self) -> list[dict[str, Any]]:
        """Plain HTTP client API (admin API included) on 127.0.0.1 only."""
        return [
            {
                "port": self.port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ]

    def _merge_config(self, overrides: Mapping[str, Any]) -> None:
        self._run(
            [str(self.python), "-c", _MERGE_CONFIG_SCRIPT, str(self.config_path)],
            stdin=json.dumps(overrides),
        )

    def _launch(self) -> None:
        # The console only gets output when Synapse dies early; keep the last run's.
        with self.console_path.open("wb") as console:
            self._process = subprocess.Popen(
                [str(self.python), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_ready()

    def _port_was_taken(self) -> bool:
        return "Failed to listen on TCP port" in _tail(self.console_path)

    def _run(self, command: list[str], stdin: str | None = None) -> None:
        result = subprocess.run(
            command,
            cwd=self.workdir,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise SynapseError(
                f"{' '.join(command[:3])} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                self._raise_start_failure(f"exited with code {self._process.returncode}")
            try:
                self._request("GET", "/_matrix/client/versions", timeout=2.0)
                return
            except (OSError, SynapseError):  # URLError is an OSError
                time.sleep(0.1)
        self._raise_start_failure(f"did not answer within {START_TIMEOUT:.0f}s")

    def _raise_start_failure(self, what: str) -> NoReturn:
        raise SynapseError(
            f"Synapse on {self.url} {what}\n"
            f"--- {self.console_path}\n{_tail(self.console_path)}\n"
            f"--- {self.log_path}\n{_tail(self.log_path)}"
        )

    def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """A JSON request to the server; HTTP errors become SynapseError."""
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return dict(json.load(response))
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise SynapseError(f"{method} {path} -> {error.code}: {detail}") from error


# -- matrix-nio helpers --------------------------------------------------------


def fail_fast_client_config() -> AsyncClientConfig:
    """nio retries 429s and connection errors forever by default; tests should
    see them instead of hanging."""
    return AsyncClientConfig(max_limit_exceeded=0, max_timeouts=3, request_timeout=30)


async def make_user_client(
    synapse: Synapse,
    username: str,
    password: str | None = None,
    config: AsyncClientConfig | None = None,
    store_path: str | None = None,
) -> AsyncClient:
    """Register ``username`` and return a logged-in ``nio.AsyncClient``.

    With ``store_path`` (a directory) the client has end-to-end encryption: its
    keys live there, and the caller uploads them (``keys_upload``).
    The caller must ``await client.close()``. Usernames must be unique per
    server (the session ``synapse`` fixture is shared by all tests).
    """
    password = password or f"{username}-password"
    user_id = await asyncio.to_thread(synapse.register, username, password)
    client = AsyncClient(
        synapse.url, user_id, config=config or fail_fast_client_config(),
        store_path=store_path or "",
    )
    response = await client.login(password, device_name="gridbot-tests")
    if not isinstance(response, LoginResponse):
        await client.close()
        raise SynapseError(f"login as {user_id} failed: {response}")
    return client


# -- pytest fixtures -------------------------------------------------------------


def _unavailable(reason: str) -> NoReturn:
    """Skip locally, but fail under CI so missing Synapse is never hidden."""
    if os.environ.get("CI"):
        pytest.fail(f"Synapse is required under CI: {reason}", pytrace=False)
    pytest.skip(f"Synapse unavailable: {reason}")


def _started(server: Synapse) -> Synapse:
    try:
        server.start()
        return server
    except SynapseError as error:
        reason = str(error)
    server.close()
    _unavailable(reason)  # outside the except block: no chained traceback


@pytest.fixture(scope="session")
def synapse() -> Iterator[Synapse]:
    """A started Synapse shared by the whole test session."""
    server = _started(Synapse())
    yield server
    server.close()


@pytest.fixture
def synapse_factory() -> Iterator[Callable[..., Synapse]]:
    """Start dedicated Synapse servers; all are closed after the test.

    ``synapse_factory(rc_message=(0.5, 2))`` gives a server whose message rate
    limit trips quickly; keyword arguments go to :class:`Synapse`.
    """
    servers: list[Synapse] = []

    def start(**kwargs: Any) -> Synapse:
        server = Synapse(**kwargs)
        servers.append(server)
        return _started(server)

    yield start
    for server in servers:
        server.close()

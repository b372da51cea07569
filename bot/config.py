"""Configuration from environment variables or a TOML file named by GRIDBOT_CONFIG.

The variable names are a contract with deployments (README, "Configuration"); the TOML file uses
the same keys, lowercased and without the GRIDBOT_ prefix (`database_url = "..."`).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LANGUAGES = ("zh", "en")


class ConfigError(Exception):
    """Invalid configuration: the message says which key and why."""


@dataclass(frozen=True)
class Config:
    data_dir: Path = field(default_factory=Path.cwd)
    database_url: str = ""
    admins: tuple[str, ...] = ()
    telegram_token: str | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_webhook_url: str | None = None
    telegram_webhook_listen: str = "127.0.0.1:8443"
    # Telegram's `max_connections` for the webhook: how many updates it hands out at once
    # (never two of one chat's messages); more lets different chats run side by side.
    telegram_webhook_connections: int = 1
    # How many instances share the bot token: each keeps to its share of Telegram's limits.
    telegram_instances: int = 1
    matrix_homeserver: str | None = None
    matrix_user: str | None = None
    matrix_password: str | None = None
    matrix_trust: str = "tofu"  # whose devices get room keys: "tofu" or "verified"
    lang: str = "zh"
    tz: str = "Asia/Shanghai"
    # The command modules the app loads (each declares its commands, jobs and digest
    # sections): the domain package by default, and any further plugin modules.
    modules: tuple[str, ...] = ("commands",)

    @property
    def telegram_enabled(self) -> bool:
        return bool(self.telegram_token)

    @property
    def matrix_enabled(self) -> bool:
        return bool(self.matrix_homeserver)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "gridbot.db"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.sqlite_path}"


_KEYS = {
    "database_url", "data_dir", "admins", "telegram_token", "telegram_api_url",
    "telegram_webhook_url", "telegram_webhook_listen", "telegram_webhook_connections",
    "telegram_instances", "matrix_homeserver", "matrix_user",
    "matrix_password", "matrix_trust", "lang", "tz", "modules",
}


def load(env: dict[str, str] | None = None) -> Config:
    """Reads the configuration and validates it, raising ConfigError with a clear message."""
    env = dict(os.environ if env is None else env)
    raw: dict[str, object] = {}
    config_file = env.get("GRIDBOT_CONFIG")
    if config_file:
        raw.update(_read_toml(Path(config_file)))
    for key in _KEYS:
        value = env.get("GRIDBOT_" + key.upper())
        if value is not None and value != "":
            raw[key] = value
    return _validate(raw)


def _read_toml(path: Path) -> dict[str, object]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"GRIDBOT_CONFIG: file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"GRIDBOT_CONFIG: {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}"
        )
    return data


def _validate(raw: dict[str, object]) -> Config:
    data_dir = Path(str(raw.get("data_dir") or Path.cwd())).expanduser()
    admins = _names(raw.get("admins"))
    lang = str(raw.get("lang", "zh"))
    if lang not in LANGUAGES:
        raise ConfigError(f"GRIDBOT_LANG must be one of {', '.join(LANGUAGES)}, not {lang!r}")
    tz = str(raw.get("tz", "Asia/Shanghai"))
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"GRIDBOT_TZ: unknown time zone {tz!r} (e.g. Asia/Shanghai)") from None
    matrix = [raw.get(k) for k in ("matrix_homeserver", "matrix_user", "matrix_password")]
    if any(matrix) and not all(matrix):
        raise ConfigError(
            "Matrix needs all of GRIDBOT_MATRIX_HOMESERVER, GRIDBOT_MATRIX_USER and "
            "GRIDBOT_MATRIX_PASSWORD"
        )
    matrix_trust = str(raw.get("matrix_trust") or "tofu")
    if matrix_trust not in ("tofu", "verified"):
        raise ConfigError(f"GRIDBOT_MATRIX_TRUST must be tofu or verified, not {matrix_trust!r}")
    url = str(raw.get("database_url", ""))
    if url and not url.startswith(("sqlite", "postgresql")):
        raise ConfigError(f"GRIDBOT_DATABASE_URL must be an SQLite or PostgreSQL URL, not {url!r}")
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite:///"):
        url = "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    connections = _number(raw, "telegram_webhook_connections", 1, 100)
    instances = _number(raw, "telegram_instances", 1, 30)
    return Config(
        data_dir=data_dir,
        database_url=url,
        admins=admins,
        telegram_token=_opt(raw, "telegram_token"),
        telegram_api_url=str(raw.get("telegram_api_url") or "https://api.telegram.org").rstrip("/"),
        telegram_webhook_url=_opt(raw, "telegram_webhook_url"),
        telegram_webhook_listen=str(raw.get("telegram_webhook_listen") or "127.0.0.1:8443"),
        telegram_webhook_connections=connections,
        telegram_instances=instances,
        matrix_homeserver=_opt(raw, "matrix_homeserver"),
        matrix_user=_opt(raw, "matrix_user"),
        matrix_password=_opt(raw, "matrix_password"),
        matrix_trust=matrix_trust,
        lang=lang,
        tz=tz,
        modules=_names(raw.get("modules")) or ("commands",),
    )


def _number(raw: dict[str, object], key: str, low: int, high: int) -> int:
    value = raw.get(key)
    if value is None or value == "":
        return low
    try:
        number = int(str(value))
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise ConfigError(f"GRIDBOT_{key.upper()} must be a whole number from {low} to {high}, "
                          f"not {value!r}")
    return number


def _opt(raw: dict[str, object], key: str) -> str | None:
    value = raw.get(key)
    return str(value) if value else None


def _names(value: object) -> tuple[str, ...]:
    """A comma-separated list (from the environment) or a TOML list."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else [
        str(v) for v in (value if isinstance(value, list | tuple) else [value])
    ]
    return tuple(item.strip() for item in items if item.strip())

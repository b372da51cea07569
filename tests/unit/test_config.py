"""Configuration is read from the environment or a TOML file and validated with clear errors."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, load


def test_defaults_need_nothing(tmp_path):
    config = load({"GRIDBOT_DATA_DIR": str(tmp_path)})
    assert config.db_url == f"sqlite+aiosqlite:///{tmp_path}/gridbot.db"
    assert (config.lang, config.tz, config.admins) == ("zh", "Asia/Shanghai", ())
    assert not config.telegram_enabled and not config.matrix_enabled
    assert config.matrix_trust == "tofu"
    assert load({"GRIDBOT_MATRIX_TRUST": "verified"}).matrix_trust == "verified"
    assert (config.telegram_webhook_connections, config.telegram_instances) == (1, 1)
    several = load({"GRIDBOT_TELEGRAM_WEBHOOK_CONNECTIONS": "8", "GRIDBOT_TELEGRAM_INSTANCES": "4"})
    assert (several.telegram_webhook_connections, several.telegram_instances) == (8, 4)


def test_environment_and_toml(tmp_path):
    path = tmp_path / "gridbot.toml"
    path.write_text('admins = ["@alice:example.org", "12345"]\nlang = "en"\ntz = "Europe/Berlin"\n')
    config = load({"GRIDBOT_CONFIG": str(path), "GRIDBOT_TZ": "Asia/Urumqi",
                   "GRIDBOT_DATABASE_URL": "postgresql://u@db/gridbot"})
    assert config.admins == ("@alice:example.org", "12345")
    assert config.lang == "en" and config.tz == "Asia/Urumqi"  # the environment wins
    assert config.db_url == "postgresql+asyncpg://u@db/gridbot"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GRIDBOT_LANG": "fr"}, "GRIDBOT_LANG"),
        ({"GRIDBOT_TZ": "Mars/Base"}, "GRIDBOT_TZ"),
        ({"GRIDBOT_MATRIX_HOMESERVER": "http://x"}, "GRIDBOT_MATRIX_USER"),
        ({"GRIDBOT_DATABASE_URL": "mysql://x"}, "GRIDBOT_DATABASE_URL"),
        ({"GRIDBOT_MATRIX_TRUST": "everyone"}, "GRIDBOT_MATRIX_TRUST"),
        ({"GRIDBOT_CONFIG": "/nonexistent.toml"}, "not found"),
        ({"GRIDBOT_TELEGRAM_WEBHOOK_CONNECTIONS": "101"}, "WEBHOOK_CONNECTIONS.*1 to 100"),
        ({"GRIDBOT_TELEGRAM_WEBHOOK_CONNECTIONS": "many"}, "WEBHOOK_CONNECTIONS"),
        ({"GRIDBOT_TELEGRAM_INSTANCES": "0"}, "GRIDBOT_TELEGRAM_INSTANCES"),
    ],
)
def test_invalid_configuration_is_explained(env, message):
    with pytest.raises(ConfigError, match=message):
        load(env)


def test_unknown_toml_keys_are_refused(tmp_path):
    path = tmp_path / "gridbot.toml"
    path.write_text('telegram_tokn = "x"\n')
    with pytest.raises(ConfigError, match="telegram_tokn"):
        load({"GRIDBOT_CONFIG": str(path)})

"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str:
    """Each test that takes it runs on SQLite ('': the bot's default file in its data
    directory) and on a real PostgreSQL."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""

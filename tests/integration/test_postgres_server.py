"""Self-test of the real-PostgreSQL harness in tests/servers/postgres.py."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.servers.postgres import (
    Postgres,
    PostgresUnavailable,
    _unavailable,
    postgres,
    postgres_url,
)

__all__ = ["postgres", "postgres_url"]  # fixtures used below by name

CLAIMANTS = 20


def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest.mark.asyncio
async def test_two_databases_are_usable_and_separate(postgres: Postgres) -> None:
    suffix = uuid.uuid4().hex[:8]
    names = [f"selftest_a_{suffix}", f"selftest_b_{suffix}"]
    urls = [postgres.create_database(name) for name in names]
    assert urls == [f"postgresql+asyncpg://postgres@127.0.0.1:{postgres.port}/{n}" for n in names]
    assert urls == [postgres.url(name) for name in names]

    engine_a, engine_b = (create_async_engine(url) for url in urls)
    try:
        async with engine_a.begin() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
            assert (await conn.execute(text("SELECT current_database()"))).scalar_one() == names[0]
            await conn.execute(
                text("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
            )
            inserted = await conn.execute(
                text("INSERT INTO notes (body) VALUES (:first), (:second) RETURNING id, body"),
                {"first": "hello", "second": "world"},
            )
            assert [tuple(row) for row in inserted] == [(1, "hello"), (2, "world")]

        async with engine_b.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
            assert (await conn.execute(text("SELECT current_database()"))).scalar_one() == names[1]
            # The table made in database A does not exist in database B.
            assert (await conn.execute(text("SELECT to_regclass('notes')"))).scalar_one() is None
    finally:
        await engine_a.dispose()
        await engine_b.dispose()
        for name in names:
            postgres.drop_database(name)


@pytest.mark.asyncio
async def test_exactly_one_of_concurrent_claims_wins(postgres_url: str) -> None:
    engine = create_async_engine(postgres_url, poolclass=NullPool)  # a new connection each time
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id int PRIMARY KEY, claimed_by text)"))
            await conn.execute(text("INSERT INTO t (id) VALUES (1)"))

        # Every claimant connects first, then all fire together, so the UPDATEs really race.
        all_connected = asyncio.Barrier(CLAIMANTS)

        async def claim(me: str) -> tuple[int, list[int]]:
            async with engine.connect() as conn:
                backend = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                await all_connected.wait()
                claimed = await conn.execute(
                    text(
                        "UPDATE t SET claimed_by = :me "
                        "WHERE id = 1 AND claimed_by IS NULL RETURNING id"
                    ),
                    {"me": me},
                )
                ids = list(claimed.scalars())
                if ids:
                    # The winner holds the row lock a moment so the losers queue behind
                    # it and must re-check `claimed_by IS NULL` once it commits.
                    await asyncio.sleep(0.05)
                # Losers commit at once too: one that waited keeps a lock on the row
                # (taken for that re-check) until its transaction ends.
                await conn.commit()
                return backend, ids

        claimants = [f"claimant-{i}" for i in range(CLAIMANTS)]
        results = await asyncio.gather(*(claim(me) for me in claimants))

        assert len({backend for backend, _ in results}) == CLAIMANTS  # separate connections
        winners = [me for me, (_, ids) in zip(claimants, results, strict=True) if ids]
        assert len(winners) == 1, winners
        assert sorted(ids for _, ids in results) == [[]] * (CLAIMANTS - 1) + [[1]]

        async with engine.connect() as conn:
            owner = (await conn.execute(text("SELECT claimed_by FROM t WHERE id = 1"))).scalar_one()
        assert owner == winners[0]
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_postgres_url_is_a_fresh_database(postgres: Postgres, postgres_url: str) -> None:
    assert postgres_url.startswith(f"postgresql+asyncpg://postgres@127.0.0.1:{postgres.port}/t_")
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.execute(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            )
            assert tables.scalar_one() == 0
            encoding = await conn.execute(
                text(
                    "SELECT pg_encoding_to_char(encoding) "
                    "FROM pg_database WHERE datname = current_database()"
                )
            )
            assert encoding.scalar_one() == "UTF8"
            assert (await conn.execute(text("SHOW fsync"))).scalar_one() == "off"
            assert (await conn.execute(text("SHOW max_connections"))).scalar_one() == "200"
    finally:
        await engine.dispose()


@pytest.mark.asyncio
async def test_template_clone_and_forced_drop(postgres: Postgres) -> None:
    suffix = uuid.uuid4().hex[:8]
    template, clone = f"selftest_tpl_{suffix}", f"selftest_clone_{suffix}"
    engine = create_async_engine(postgres.create_database(template))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE migrated (id int)"))
    finally:
        await engine.dispose()  # a template must have no sessions while it is copied

    postgres.create_database(clone, template=template)
    # Called from inside a running event loop on purpose: the helpers must cope.
    conn = await asyncpg.connect(
        host=postgres.host, port=postgres.port, user=postgres.user, database=clone
    )
    try:
        assert await conn.fetchval("SELECT to_regclass('migrated') IS NOT NULL") is True
        postgres.drop_database(clone)  # must not be blocked by our open session
    finally:
        conn.terminate()
    postgres.drop_database(template)
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(
            host=postgres.host, port=postgres.port, user=postgres.user, database=clone
        )


def test_invalid_database_names_are_rejected(postgres: Postgres) -> None:
    for bad in ["", "Upper", "1st", "semi;colon", 'quo"te', "x" * 64]:
        with pytest.raises(ValueError):
            postgres.create_database(bad)


def test_missing_binaries_raise_unavailable(tmp_path: Path) -> None:
    with pytest.raises(PostgresUnavailable, match="no executable initdb"):
        Postgres(bindir=tmp_path).start()


def test_unavailable_skips_locally_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _unavailable("no binaries")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        _unavailable("no binaries")

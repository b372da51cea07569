"""Group commit (storage/db.py `Database.grouped`): units of work submitted together share
one transaction, each in its own savepoint."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from storage import models
from storage.db import Database


@pytest.fixture
async def database(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'group.db'}")
    await db.migrate()
    commits: list[int] = []
    event.listen(db.engine.sync_engine, "commit", lambda conn: commits.append(1))
    db.commits = commits  # type: ignore[attr-defined]
    yield db
    await db.close()


def storing(key: str, fail: BaseException | None = None):
    async def work(session):
        session.add(models.KeyValue(key=key, value="x"))
        await session.flush()
        if fail is not None:
            raise fail
        return key
    return work


async def stored(db: Database) -> set[str]:
    async with db.transaction() as session:
        return set(await session.scalars(select(models.KeyValue.key)))


async def test_units_arriving_together_share_one_commit_and_fail_alone(database):
    results = await asyncio.gather(
        database.grouped(storing("a")),
        database.grouped(storing("b", ValueError("a bug in b"))),
        database.grouped(storing("c")),
        return_exceptions=True,
    )
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], ValueError)
    assert await stored(database) == {"a", "c"}  # b rolled back alone
    assert len(database.commits) == 1 + 1  # the group, then the read above


async def test_a_unit_alone_runs_in_its_own_transaction(database):
    assert await database.grouped(storing("alone")) == "alone"
    with pytest.raises(ValueError):
        await database.grouped(storing("broken", ValueError("bug")))
    assert await stored(database) == {"alone"}


async def test_a_transient_error_fails_the_whole_group_and_keeps_nothing(database):
    locked = OperationalError("INSERT", {}, Exception("database is locked"))
    results = await asyncio.gather(
        database.grouped(storing("a")),
        database.grouped(storing("b", locked)),
        database.grouped(storing("c")),
        return_exceptions=True,
    )
    # The transaction itself is in doubt: every unit is told, so each can run again.
    assert all(isinstance(r, OperationalError) for r in results)
    assert await stored(database) == set()


# -- riders (`Database.ride`): bookkeeping that shares the next transaction ---------------------


async def test_a_rider_shares_the_next_transaction_instead_of_committing_its_own(database):
    rider = database.ride(storing("mark"))
    assert await database.grouped(storing("command")) == "command"
    assert await rider == "mark"
    assert len(database.commits) == 1  # one commit for both
    assert await stored(database) == {"mark", "command"}


async def test_a_rider_alone_commits_after_waiting_briefly_for_company(database):
    assert await asyncio.wait_for(database.ride(storing("mark")), timeout=5) == "mark"
    assert len(database.commits) == 1
    assert await stored(database) == {"mark"}


async def test_a_rider_rolled_back_with_a_unit_that_said_no_runs_again(database):
    rider = database.ride(storing("mark"))
    with pytest.raises(ValueError):
        await database.grouped(storing("refused", ValueError("no")))
    assert await rider == "mark"  # not lost with the unit's rollback
    assert await stored(database) == {"mark"}


async def test_a_failing_rider_is_told_alone_and_the_units_still_run(database):
    rider = database.ride(storing("bad mark", ValueError("a bug in the rider")))
    assert await database.grouped(storing("command")) == "command"
    with pytest.raises(ValueError):
        await rider
    assert await stored(database) == {"command"}


async def test_a_transient_error_fails_riders_too_so_their_owner_tries_again(database):
    locked = OperationalError("INSERT", {}, Exception("database is locked"))
    rider = database.ride(storing("mark"))
    with pytest.raises(OperationalError):
        await database.grouped(storing("command", locked))
    with pytest.raises(OperationalError):
        await rider
    assert await stored(database) == set()


async def test_closing_runs_waiting_riders_at_once(database):
    rider = database.ride(storing("mark"))
    await database.close()
    assert rider.done() and rider.result() == "mark"

"""The city digest bench loads its history through the driver (COPY on PostgreSQL,
executemany on SQLite); what it stores must be what an ORM insert of the same rows stores,
or the bench would measure another database than the one it describes."""

from __future__ import annotations

import uuid

from sqlalchemy import insert, select

from bench.digest_cost import NOW, ORDER, History, Loader
from bot.app import App
from bot.clock import ManualClock
from bot.config import Config
from storage import models

# Enough days for every kind of row: done, claimed and open errands, key persons whose
# observation ended and who are still observed, overdue ones, alerts, past rounds.
GRIDS, DAYS, HOUSEHOLDS = 2, 20, 96


async def loaded(workdir, url: str, through_driver: bool) -> dict[str, list[tuple]]:
    app = App(Config(data_dir=workdir, database_url=url), clock=ManualClock(NOW))
    await app.start([])
    try:
        history = History(GRIDS, DAYS, HOUSEHOLDS)
        loader = Loader(app)
        for g in range(GRIDS + 1):
            if g:
                history.grid(g)
            rows = history.take()
            if through_driver:
                await loader.write(rows)
                continue
            async with app.db.transaction() as db:
                for model in ORDER:
                    if rows[model]:
                        await db.execute(insert(model), rows[model])
        tables = [models.table(model) for model in ORDER]
        async with app.db.engine.connect() as conn:
            return {
                table.name: [
                    tuple(row)
                    for row in await conn.execute(select(table).order_by(*table.primary_key))
                ]
                for table in tables
            }
    finally:
        await app.stop()


def assert_same(orm: dict[str, list[tuple]], driver: dict[str, list[tuple]]) -> None:
    assert len(orm["errands"]) == GRIDS * DAYS * 8  # the history is there at all
    assert len(orm["checkins"]) > GRIDS * DAYS
    for table, rows in orm.items():
        assert driver[table] == rows, table


async def test_sqlite_loader_stores_what_the_orm_stores(tmp_path):
    orm = await loaded(tmp_path / "orm", "", through_driver=False)
    driver = await loaded(tmp_path / "driver", "", through_driver=True)
    assert_same(orm, driver)


async def test_postgres_loader_stores_what_the_orm_stores(tmp_path, postgres):
    names = [f"load_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("orm", "driver")]
    urls = [postgres.create_database(name) for name in names]
    try:
        orm = await loaded(tmp_path / "orm", urls[0], through_driver=False)
        driver = await loaded(tmp_path / "driver", urls[1], through_driver=True)
    finally:
        for name in names:
            postgres.drop_database(name)
    assert_same(orm, driver)

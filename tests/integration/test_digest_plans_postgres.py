"""The digest's key person queries on PostgreSQL read only the key persons under observation,
not every one the grid ever had: their cost must follow the unfinished work, not the history.

Checked on the plans PostgreSQL really runs (EXPLAIN ANALYZE of the statements the section
sends), so it holds whatever the number of rows: no scan of key_persons may discard rows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import event, insert, text

from bot.app import App
from bot.clock import ManualClock
from bot.config import Config
from bot.context import JobContext
from bot.registry import REGISTRY
from storage import models

NOW = datetime(2026, 2, 10, 12, 1, tzinfo=UTC)
SINCE = NOW - timedelta(days=1)
# A long history: each grid's past key persons, all ended, and its current ones.
GRIDS, PAST_PER_GRID, OBSERVED_PER_GRID = 10, 300, 14


def rows() -> dict[type, list[dict]]:
    long_ago = NOW - timedelta(days=PAST_PER_GRID + 30)
    made: dict[type, list[dict]] = {
        models.Person: [{"id": 1, "transport": "console", "external_id": "w", "username": "w",
                         "display_name": "w", "created_at": long_ago}],
        models.Community: [{"id": 1, "name": "c", "created_at": long_ago}],
        models.Grid: [], models.Household: [], models.KeyPerson: [], models.CheckIn: [],
    }
    number = 0

    def key_person(grid: int, started: datetime, ended: datetime | None, alert: bool) -> None:
        nonlocal number
        number += 1
        made[models.KeyPerson].append({
            "id": number, "community_id": 1, "number": number, "grid_id": grid,
            "household_id": grid, "name": f"r{number}", "reason": "home-observation",
            "started_at": started, "ended_at": ended, "watcher_id": 1, "created_by_id": 1,
        })
        made[models.CheckIn].append({"key_person_id": number, "symptoms": "",
                                     "temperature": 37.9 if alert else 36.5, "alert": alert,
                                     "by_id": 1, "at": min(NOW, started + timedelta(hours=2))})

    for grid in range(1, GRIDS + 1):
        made[models.Grid].append({"id": grid, "community_id": 1, "code": f"g{grid:02d}",
                                  "name": f"{grid}", "round_started_at": long_ago,
                                  "created_at": long_ago})
        made[models.Household].append({"id": grid, "community_id": 1, "grid_id": grid,
                                       "code": f"{grid}-1-101", "building": str(grid),
                                       "created_at": long_ago})
        for day in range(PAST_PER_GRID, 0, -1):  # one a day, observed 14 days
            started = NOW - timedelta(days=day + 14, hours=1)
            key_person(grid, started, started + timedelta(days=14), alert=day % 7 == 0)
        # Observed in the period: one ended today, and those still observed, the newest of
        # whom alerted today.
        key_person(grid, NOW - timedelta(days=14), NOW - timedelta(hours=3), alert=False)
        for hours in range(OBSERVED_PER_GRID, 0, -1):
            key_person(grid, NOW - timedelta(hours=hours * 5), None, alert=hours == 1)
    return made


def key_person_scans(node: dict) -> list[dict]:
    found = [node] if node.get("Relation Name") == "key_persons" else []
    for child in node.get("Plans", []):
        found += key_person_scans(child)
    return found


async def test_keypersons_section_reads_only_who_is_observed(tmp_path, postgres_url):
    app = App(Config(data_dir=tmp_path, database_url=postgres_url), clock=ManualClock(NOW))
    await app.start([])
    try:
        async with app.db.connection() as conn:
            for model, values in rows().items():
                await conn.execute(insert(model), values)
        async with app.db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))

        sent: list[tuple[str, object]] = []

        def record(conn, cursor, statement, parameters, context, executemany) -> None:
            if "key_persons" in statement:
                sent.append((statement, parameters))

        section = next(s for s in REGISTRY.digest_sections if s.name == "keypersons")
        async with app.db.sessions() as db:
            jc = JobContext(app=app, db=db, now=NOW)
            jc.community = await db.get(models.Community, 1)
            grid = await db.get(models.Grid, 1)
            event.listen(app.db.engine.sync_engine, "before_cursor_execute", record)
            try:
                values = await section.function(jc, grid, SINCE, NOW)
            finally:
                event.remove(app.db.engine.sync_engine, "before_cursor_execute", record)
            assert values["active"] == OBSERVED_PER_GRID
            assert [kp.number for _, kp, _ in values["alerts"]] == [
                PAST_PER_GRID + 1 + OBSERVED_PER_GRID]
            await db.rollback()

        assert len(sent) >= 2  # the key persons under observation, and the alerts
        async with app.db.engine.connect() as conn:
            for statement, parameters in sent:
                explained = (await conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)).scalar_one()
                plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]
                scans = key_person_scans(plan["Plan"])
                assert scans, statement
                for scan in scans:
                    assert scan["Node Type"] != "Seq Scan", (statement, scan)
                    assert scan.get("Rows Removed by Filter", 0) == 0, (statement, scan)
                    assert scan.get("Rows Removed by Index Recheck", 0) == 0, (statement, scan)
    finally:
        await app.stop()

"""Digest cost as history grows: the same unfinished work on top of 1× and 10× history.

    python -m bench.digest_cost [--grids 8] [--households 960] [--days 30] [--reps 9]
                                [--postgres]

    python -m bench.digest_cost --grids 100 --households 50000 --reps 5             # a city
    python -m bench.digest_cost --grids 100 --households 50000 --reps 5 --postgres

Two databases (SQLite files, or with --postgres two databases on a throwaway PostgreSQL
server from tests/servers/postgres.py) hold one community each: grids, households, members,
door-to-door
screenings in 10-day rounds, visitors and vehicles, key persons with check-ins, and errands,
spread over `days` and over 10 × `days` past days. What is unfinished at digest time (the
current round, key persons under observation, errands not done, the last 24 h) is the
same in both. The daily digest (commands/digest.py `send_due`, rolled back so it can run
again) is timed on each, alternately, and so is each section on its own; the ratios
10×/1× should stay near 1 when every query is bounded by unfinished work and indexed.
For the statements that grow with history the query plan (EXPLAIN QUERY PLAN) is shown.

No ANALYZE is run on SQLite, as none is in production: the planner works without
statistics. PostgreSQL's autovacuum vacuums and analyses on its own (insert-only tables too,
since PostgreSQL 13); the bench runs VACUUM ANALYZE once after loading, as autovacuum would
have by then.

Loading is set-up, not measured: the rows go straight through the driver (COPY on
PostgreSQL, executemany on SQLite), the same rows an ORM insert would store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import random
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import event, select, text

from bot.app import App
from bot.clock import ManualClock
from bot.config import Config
from bot.context import JobContext
from bot.registry import REGISTRY
from commands import digest
from storage import models
from storage.types import UTCDateTime

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 2, 10, 20, 1, tzinfo=TZ).astimezone(UTC)  # just after the 20:00 digest
DAY = timedelta(days=1)
UNITS, FLOORS, ROOMS = 2, 6, 2  # per building: 24 households
ROUND_DAYS = 10  # a screening round visits every household once in 10 days
CURRENT_ROUND_AGE = 5  # the current round started 5 days ago: half the households done
VISITS_PER_DAY = 5  # visitors, and vehicles, per grid and day
ERRANDS_PER_DAY = 8  # per grid and day
OBSERVATION_DAYS = 14  # one new key person per grid and day, observed this long
SLOW = 1.5  # a statement whose time grows more than this (10×/1×) is shown with its plan


@functools.cache
def local(age: int, hour: int, minute: int = 0) -> datetime:
    """`age` days before today, at hour:minute community time, in UTC."""
    day = NOW.astimezone(TZ).date() - timedelta(days=age)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ).astimezone(UTC)


class History:
    """The rows of one community over `days` past days, with ids given here (bulk insert)."""

    def __init__(self, grids: int, days: int, households: int) -> None:
        self.rows: dict[type, list[dict]] = defaultdict(list)
        self.counted: dict[str, int] = defaultdict(int)
        self.grids, self.days, self.per_grid = grids, days, households // grids
        self.random = random.Random(7)
        self.ids: dict[type, itertools.count] = defaultdict(lambda: itertools.count(1))
        self.created = local(days + 1, 9)
        self.add(models.Person, transport="console", external_id="admin", username="admin",
                 display_name="admin", created_at=self.created)
        self.add(models.Community, name="基准社区", hq_chat_id=1, created_at=self.created,
                 followup_minutes=24 * 60)
        self.add(models.Chat, transport="console", external_id="hq", community_id=1)
        self.add(models.Membership, community_id=1, person_id=1, role="secretary",
                 created_at=self.created)
        self.numbers = {"E": itertools.count(1), "K": itertools.count(1)}
        self.current_round = 1 + -(-(days - CURRENT_ROUND_AGE) // ROUND_DAYS)

    def take(self) -> dict[type, list[dict]]:
        """The rows made since the last call (a city's history does not fit in memory)."""
        rows, self.rows = self.rows, defaultdict(list)
        return rows

    def add(self, model: type, **values) -> int:
        row_id = next(self.ids[model])
        self.rows[model].append({"id": row_id, **values})
        self.counted[model.__tablename__] += 1
        return row_id

    def grid(self, g: int) -> None:
        days, current_round = self.days, self.current_round
        grid = self.add(models.Grid, community_id=1, code=f"g{g:02d}", name=f"{g}网格",
                        round_no=current_round, round_started_at=local(CURRENT_ROUND_AGE, 8),
                        created_at=self.created)
        self.add(models.Chat, transport="console", external_id=f"g{g}chat", community_id=1,
                 grid_id=grid)
        members = []
        for i, role in enumerate(["leader"] + ["member"] * 5):
            person = self.add(models.Person, transport="console", external_id=f"p{g}-{i}",
                              username=f"p{g}_{i}", display_name=f"志愿者{g}-{i}",
                              created_at=self.created)
            self.add(models.Membership, community_id=1, grid_id=grid, person_id=person, role=role,
                     created_at=self.created)
            members.append(person)
        per_building = UNITS * FLOORS * ROOMS
        households = []
        for k in range(self.per_grid):
            b, k_in = g * 1000 + k // per_building, k % per_building
            u, f, r = k_in // (FLOORS * ROOMS) + 1, k_in // ROOMS % FLOORS + 1, k_in % ROOMS + 1
            households.append(self.add(
                models.Household, community_id=1, grid_id=grid, code=f"{b}-{u}-{f}{r:02d}",
                building=str(b), created_at=self.created,
            ))
        for age in range(days - 1, -1, -1):
            self.screenings(grid, households, members, age, current_round)
            self.visits(grid, households, members, age)
            self.key_person(grid, households, members, age)
            self.errands(grid, households, members, age)

    def screenings(self, grid, households, members, age, current_round) -> None:
        """Each round screens every household once, a tenth of them each day."""
        if age < CURRENT_ROUND_AGE:
            round_no, day_in_round = current_round, CURRENT_ROUND_AGE - 1 - age
        else:
            past = age - CURRENT_ROUND_AGE
            round_no, day_in_round = current_round - 1 - past // ROUND_DAYS, 9 - past % ROUND_DAYS
        for h, household in enumerate(households):
            if h % ROUND_DAYS != day_in_round:
                continue
            fever = (h // ROUND_DAYS + round_no) % 6 == 0  # a few a day
            self.add(models.Screening, community_id=1, grid_id=grid, household_id=household,
                     round_no=round_no, status="fever" if fever else "ok", people=3,
                     temperature=37.9 if fever else None, note="", by_id=members[h % 6],
                     at=local(age, 9 + h % 8, h % 60))

    def visits(self, grid, households, members, age) -> None:
        for i in range(VISITS_PER_DAY):
            household = self.random.choice(households)
            self.add(models.Visitor, community_id=1, grid_id=grid, household_id=household,
                     origin="武汉" if i == 0 else "", note="", by_id=members[1],
                     at=local(age, 9 + 2 * i))
            self.add(models.Vehicle, community_id=1, grid_id=grid, plate=f"蒙A{age:03d}{i}{grid}",
                     household_id=household, note="", by_id=members[2], at=local(age, 10 + 2 * i))

    def key_person(self, grid, households, members, age) -> None:
        """A key person from this day on, checked in at 08:00 and 18:00 while observed; every
        fourth has missed the last two days (overdue)."""
        number = next(self.numbers["K"])
        started = local(age, 10)
        ended = started + OBSERVATION_DAYS * DAY
        kp = self.add(models.KeyPerson, community_id=1, number=number, grid_id=grid,
                      household_id=self.random.choice(households), name=f"居民{number}",
                      reason="home-observation", started_at=started,
                      ended_at=ended if ended <= NOW else None, watcher_id=members[3],
                      created_by_id=members[0])
        for day in range(age, max(age - OBSERVATION_DAYS, -1), -1):
            if number % 4 == 0 and day < 2:
                continue
            for hour in (8, 18):
                at = local(day, hour)
                if started < at <= min(ended, NOW):
                    alert = hour == 18 and (number + day) % 11 == 0  # about one a day
                    self.add(models.CheckIn, key_person_id=kp, temperature=37.8 if alert else 36.5,
                             symptoms="咳嗽" if alert else "", alert=alert, by_id=members[3], at=at)

    def errands(self, grid, households, members, age) -> None:
        """Errands older than two days are done (or cancelled); yesterday's are open or
        claimed, some overdue; of today's, half are done and half open."""
        for i in range(ERRANDS_PER_DAY):
            posted = local(age, 8 + i)
            row = {"community_id": 1, "number": next(self.numbers["E"]), "grid_id": grid,
                   "text": "买菜", "household_id": self.random.choice(households),
                   "posted_by_id": members[5], "posted_at": posted, "done_note": "",
                   "state": "open"}
            if age >= 2 or (age == 0 and i < ERRANDS_PER_DAY // 2):
                if i % 10 == 9:
                    row.update(state="cancelled", closed_at=posted + timedelta(hours=1))
                else:
                    row.update(state="done", claimed_by_id=members[i % 5 + 1],
                               claimed_at=posted + timedelta(minutes=30),
                               done_at=posted + timedelta(hours=3),
                               closed_at=posted + timedelta(hours=3))
            elif age == 1:
                if i % 2:
                    row.update(state="claimed", claimed_by_id=members[i % 5 + 1],
                               claimed_at=posted + timedelta(minutes=30))
                if i % 3 == 0:
                    row["due_at"] = posted + timedelta(hours=4)  # overdue by now
            else:
                row["due_at"] = NOW + timedelta(hours=6)
            self.add(models.Errand, **row)

    def counts(self) -> dict[str, int]:
        return dict(self.counted)


# Parents before children (foreign keys are on).
ORDER = [models.Person, models.Community, models.Grid, models.Chat, models.Membership,
         models.Household, models.Screening, models.Visitor, models.Vehicle, models.KeyPerson,
         models.CheckIn, models.Errand]


class Size:
    """One database: the app on it, and the statements run, timed, per section."""

    def __init__(self, label: str, app: App) -> None:
        self.label, self.app = label, app
        self.section = ""  # the section running now; its statements are timed
        self.statements: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.examples: dict[tuple[str, str], tuple] = {}
        engine = app.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        conn.info["started"] = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.section and statement.startswith("SELECT"):
            key = (self.section, statement)
            self.statements[key].append(time.perf_counter() - conn.info["started"])
            self.examples[key] = parameters


CHUNK = 5000  # rows per batch handed to the driver
LOAD_CACHE_KB = 256_000  # SQLite's page cache while loading


class Loader:
    """Writes the made rows straight through the driver: COPY on PostgreSQL (asyncpg's
    copy_records_to_table), executemany on SQLite, each grid's rows in one transaction.
    Every column gets what an ORM insert of the same dict would store: the value given, else
    the column's Python default, else NULL; then the column type's own bind conversion."""

    def __init__(self, app: App) -> None:
        self.app, self.dialect = app, app.db.engine.dialect
        self.columns: dict[type, list] = {}

    def _prepare(self, model: type) -> list:
        if model not in self.columns:
            prepared = []
            for column in models.table(model).columns:
                if column.server_default is not None and column.default is None:
                    raise SystemExit(f"{column}: a server default the loader cannot apply")
                default = column.default
                make = (None if default is None else default.arg if default.is_callable
                        else lambda _context, value=default.arg: value)
                process = column.type.dialect_impl(self.dialect).bind_processor(self.dialect)
                if process is not None and isinstance(column.type, UTCDateTime):
                    process = functools.cache(process)  # the same few thousand instants
                prepared.append((column.key, make, process))
            self.columns[model] = prepared
        return self.columns[model]

    def records(self, model: type, rows: list[dict]) -> list[tuple]:
        columns = self._prepare(model)
        records = []
        for row in rows:
            record = []
            for key, make, process in columns:
                value = row[key] if key in row else None if make is None else make(None)
                if process is not None and value is not None:
                    value = process(value)
                record.append(value)
            records.append(tuple(record))
        return records

    async def write(self, rows: dict[type, list[dict]]) -> None:
        async with self.app.db.connection() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            if self.app.db.is_sqlite:
                await self._executemany(raw, rows)
                return
            for model in ORDER:
                names = [key for key, _, _ in self._prepare(model)]
                for start in range(0, len(rows[model]), CHUNK):
                    records = self.records(model, rows[model][start : start + CHUNK])
                    await raw.copy_records_to_table(model.__tablename__, records=records,
                                                    columns=names)

    async def _executemany(self, raw, rows: dict[type, list[dict]]) -> None:
        # A city's indexes do not fit in SQLite's default page cache (2 MB): while loading,
        # the connection gets a larger one, and its own back before it returns to the pool.
        cache_size = raw.execute("PRAGMA cache_size").fetchone()[0]
        raw.execute(f"PRAGMA cache_size=-{LOAD_CACHE_KB}")
        try:
            for model in ORDER:
                names = [key for key, _, _ in self._prepare(model)]
                statement = (f"INSERT INTO {model.__tablename__} ({', '.join(names)}) "
                             f"VALUES ({', '.join('?' * len(names))})")
                for start in range(0, len(rows[model]), CHUNK):
                    raw.executemany(statement,
                                    self.records(model, rows[model][start : start + CHUNK]))
        finally:
            raw.execute(f"PRAGMA cache_size={cache_size}")


async def build(workdir: Path, label: str, grids: int, days: int, households: int,
                url: str = "") -> tuple[Size, dict[str, int]]:
    app = App(Config(data_dir=workdir / label, database_url=url), clock=ManualClock(NOW))
    await app.start([])
    history = History(grids, days, households)
    write = Loader(app).write

    await write(history.take())
    for g in range(1, grids + 1):
        history.grid(g)
        await write(history.take())
    async with app.db.transaction() as db:
        db.add(models.Counter(community_id=1, kind="E", last=next(history.numbers["E"]) - 1))
        db.add(models.Counter(community_id=1, kind="K", last=next(history.numbers["K"]) - 1))
    if not app.db.is_sqlite:
        async with app.db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))
    return Size(label, app), history.counts()


async def daily_digest(size: Size) -> tuple[float, int]:
    """One run of the daily digest job, rolled back (it records itself as sent); returns the
    time taken and the characters queued."""
    async with size.app.db.sessions() as db:
        started = time.perf_counter()
        jc = JobContext(app=size.app, db=db, now=NOW)
        await digest.send_due(jc, community_id=1)
        await jc.seal()  # messages are rendered for their readers when the work is done
        await db.flush()
        elapsed = time.perf_counter() - started
        await db.rollback()
    if not jc.queued:
        raise SystemExit("the digest queued nothing: was it already sent, or not due?")
    return elapsed, sum(len(row.text) for row in jc.queued)


async def sections(size: Size) -> dict[str, float]:
    """Each digest section on its own, for every grid (the section contract's call), each
    statement timed."""
    times = {}
    async with size.app.db.sessions() as db:
        jc = JobContext(app=size.app, db=db, now=NOW)
        jc.community = await db.get(models.Community, 1)
        grids = (await db.scalars(select(models.Grid).order_by(models.Grid.code))).all()
        due = digest.last_due_time(jc.community, NOW)
        for section in REGISTRY.digest_sections:
            size.section = section.name
            started = time.perf_counter()
            if section.scope == "community":  # gathered once over all the grids
                await section.function(jc, list(grids), due - DAY, NOW)
            for grid in grids if section.scope == "grid" else ():
                await section.function(jc, grid, due - DAY, NOW)
            times[section.name] = time.perf_counter() - started
        size.section = ""
        await db.rollback()
    return times


async def plan(size: Size, statement: str, parameters) -> list[str]:
    """EXPLAIN QUERY PLAN, indented as SQLite nests it (PostgreSQL's EXPLAIN as it is)."""
    async with size.app.db.engine.connect() as conn:
        if not size.app.db.is_sqlite:
            rows = (await conn.exec_driver_sql("EXPLAIN " + statement, parameters)).all()
            return [row[0] for row in rows]
        rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)).all()
    depth = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


async def measure(small: Size, large: Size, reps: int) -> dict:
    digest_times = {small.label: [], large.label: []}
    section_times: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    characters = {}
    for rep in range(reps + 1):
        # ABBA order, so drift on a shared machine falls on both sides alike.
        order = (small, large) if rep % 2 else (large, small)
        for size in order:
            elapsed, characters[size.label] = await daily_digest(size)
            if rep == 0:  # the first round warms caches and compiles statements
                size.statements.clear()
                continue
            digest_times[size.label].append(elapsed)
            for name, spent in (await sections(size)).items():
                section_times[name][size.label].append(spent)
    return {"digest": digest_times, "sections": section_times, "characters": characters}


def median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass(order=True)
class Growth:
    ratio: float
    section: str
    statement: str
    small_ms: float
    large_ms: float
    plan: list[str]

    def show(self) -> str:
        head, sep, tail = " ".join(self.statement.split()).partition(" FROM ")
        if len(head) > 70:  # the column list says little
            head = head[:60] + " …"
        return (f"[{self.section}] {self.small_ms:.2f} ms → {self.large_ms:.2f} ms per call, "
                f"ratio {self.ratio:.1f}:\n  {head}{sep}{tail}\n  plan:\n"
                + "\n".join(f"    {line}" for line in self.plan))


async def growing_statements(small: Size, large: Size) -> list[Growth]:
    """Statements whose median time per call grows by more than SLOW, fastest growth first."""
    found = []
    for key, times in large.statements.items():
        if key not in small.statements:
            continue
        small_ms, large_ms = median(small.statements[key]) * 1000, median(times) * 1000
        if large_ms / small_ms > SLOW:
            lines = await plan(large, key[1], large.examples[key])
            found.append(Growth(large_ms / small_ms, key[0], key[1], small_ms, large_ms, lines))
    return sorted(found, reverse=True)


async def run(grids: int, days: int, households: int, reps: int, postgres: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        urls = {"1x": "", "10x": ""}
        if postgres:
            from tests.servers.postgres import Postgres

            server = stack.enter_context(Postgres())
            urls = {label: server.create_database(f"digest_{label}") for label in urls}
        started = time.perf_counter()
        small, small_rows = await build(Path(tmp), "1x", grids, days, households, urls["1x"])
        large, large_rows = await build(Path(tmp), "10x", grids, days * 10, households,
                                        urls["10x"])
        loaded = time.perf_counter() - started
        try:
            result = await measure(small, large, reps)
            growing = await growing_statements(small, large)
        finally:
            await small.app.stop()
            await large.app.stop()
    history_rows = sum(large_rows.values()) / sum(small_rows.values())
    print(f"database: {'PostgreSQL' if postgres else 'SQLite'} (loaded in {loaded:.0f} s)")
    print(f"community: {grids} grids, {small_rows['households']:,} households; "
          f"history {days} days ({sum(small_rows.values()):,} rows) vs {days * 10} days "
          f"({sum(large_rows.values()):,} rows, {history_rows:.1f}×)")
    print("rows 1x/10x: " + ", ".join(
        f"{table} {small_rows[table]:,}/{large_rows[table]:,}"
        for table in ("screenings", "checkins", "errands", "visitors", "key_persons")))
    print(f"digest text 1x/10x: {result['characters']['1x']:,}/{result['characters']['10x']:,} "
          "characters (the same unfinished work; longer numbers)")
    times = result["digest"]
    per_rep = [b / a for a, b in zip(times["1x"], times["10x"], strict=True)]
    print(f"daily digest (send_due, HQ + {grids} grid chats), median of {reps}: "
          f"1x {median(times['1x']) * 1000:.1f} ms, 10x {median(times['10x']) * 1000:.1f} ms")
    print(f"ratio 10x/1x: {median(times['10x']) / median(times['1x']):.2f} "
          f"(per-run ratios {min(per_rep):.2f}–{max(per_rep):.2f})")
    for name, by_size in result["sections"].items():
        small_ms, large_ms = median(by_size["1x"]) * 1000, median(by_size["10x"]) * 1000
        print(f"  section {name:<11} 1x {small_ms:7.1f} ms  10x {large_ms:7.1f} ms  "
              f"ratio {large_ms / small_ms:5.2f}")
    if not growing:
        print(f"no statement grows by more than {SLOW}× with history")
    for growth in growing:
        print("\n" + growth.show())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grids", type=int, default=8)
    parser.add_argument("--households", type=int, default=960, help="in the community")
    parser.add_argument("--days", type=int, default=30, help="history of the 1x database")
    parser.add_argument("--reps", type=int, default=9, help="timed runs of each, alternating")
    parser.add_argument("--postgres", action="store_true",
                        help="on a throwaway PostgreSQL server instead of SQLite")
    args = parser.parse_args()
    asyncio.run(run(args.grids, args.days, args.households, args.reps, args.postgres))


if __name__ == "__main__":
    main()

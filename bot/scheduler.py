"""One APScheduler (3.x) in the bot's event loop, reading time from the app's clock.

With the real clock it runs as usual. With a manual clock (the console's `:clock`/`:wait`,
tests) it stays paused and `advance_to` fires every job that falls due on the way, in
order, moving the clock to each job's time first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.clock import Clock, ManualClock

log = logging.getLogger(__name__)

JobFunction = Callable[[], Awaitable[None]]


class Scheduler:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._aps = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        self._daily: dict[str, tuple[time, str]] = {}

    def start(self) -> None:
        self._aps.start(paused=self.clock.manual)

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)

    def every(self, job_id: str, interval: timedelta, function: JobFunction) -> None:
        start = self.clock.now() + interval
        trigger = IntervalTrigger(seconds=interval.total_seconds(), start_date=start)
        self._add(job_id, trigger, function)

    def daily(self, job_id: str, at: time, tz: str, function: JobFunction) -> None:
        """Runs `function` every day at `at` in time zone `tz`; scheduling the same again is a
        no-op, so callers may re-sync schedules from the database as often as they like."""
        if self._daily.get(job_id) == (at, tz) and self._aps.get_job(job_id):
            return
        self._daily[job_id] = (at, tz)
        self._add(job_id, CronTrigger(hour=at.hour, minute=at.minute, timezone=tz), function)

    def _add(self, job_id: str, trigger, function: JobFunction) -> None:
        # The first run is computed from our clock, not the machine's.
        first = trigger.get_next_fire_time(None, self.clock.now())
        self._aps.add_job(
            function, trigger, id=job_id, replace_existing=True, next_run_time=first, name=job_id
        )

    async def advance_to(self, target: datetime) -> None:
        """Moves a manual clock to `target`, running each job due on the way, in time order."""
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise TypeError("only a manual clock is moved by hand")
        while True:
            due = [j for j in self._aps.get_jobs() if j.next_run_time and j.next_run_time <= target]
            if not due:
                break
            job = min(due, key=lambda j: j.next_run_time)
            fire_time = job.next_run_time
            if fire_time > clock.now():
                clock.set(fire_time)
            following = job.trigger.get_next_fire_time(fire_time, fire_time)
            if following is None:
                job.remove()
            else:
                job.modify(next_run_time=following)
            await job.func()
        if target > clock.now():
            clock.set(target)

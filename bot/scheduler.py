"""One APScheduler (3.x) in the bot's event loop, reading time from the app's clock.

With the real clock it runs as usual: every job at every one of its times.

With a manual clock (the console's `:clock`/`:wait`, tests) it stays paused, and
`advance_to` walks the jump itself, one run at a time in time order (ties by job id, as
APScheduler orders them), moving the clock to each run's time first, so that each run is
stamped with its moment. The rule for which runs it makes:

- A job runs only at its own times: start + n × interval for a periodic job (start is when
  the bot started, plus one interval), its hour in its time zone for a daily one.
- A job declared with `due` (`@job(every=..., due=...)`, bot/registry.py) skips those of its
  times at which a run would write nothing and send nothing. It runs at the first of its
  times at or after the moment `due` names (None: not in this jump) — the time at which a
  running bot's run would act — so what it writes and sends, its timestamps, and its order
  relative to the other jobs are the same as a running bot's. A time it skipped stays
  skipped: it never runs at a time before the last run of the jump (in time, then id
  order), just as a running bot's earlier run found nothing. `due` is asked when the job
  has a time within the jump, and again after each job run that committed (`changed`):
  one job's work can make another's (a shift credited, then its workers asked after duty).
  A job's own bookkeeping (how far the retention sweep has looked) is not work.
  Declared so: the claim sweep, the key-person sweep, the shift clock, the question after
  duty, retention.
- A job declared `catch_up=True` (what it does does not depend on when: following digest
  times changed by another instance) runs once per jump, at its first time in it, or until
  a run commits (another instance holding the jobs lease makes a run do nothing).
- Every other job runs at each of its times: each daily digest, and the outbox retry
  (every minute; without a failed delivery it checks a flag and touches no database).

After a jump each job's next time is its first after the target, as if it had run at all of
them. A skipped run renews no jobs lease (bot/app.py); with one instance, as on the
console, that changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.clock import Clock, ManualClock

log = logging.getLogger(__name__)

JobFunction = Callable[[], Awaitable[None]]
Due = Callable[[], Awaitable[datetime | None]]


@dataclass(frozen=True)
class _Jump:
    """How an interval job behaves when the manual clock jumps (see the module docstring)."""

    interval: timedelta
    due: Due | None = None
    catch_up: bool = False


class Scheduler:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._aps = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        self._daily: dict[str, tuple[time, str]] = {}
        self._jumps: dict[str, _Jump] = {}
        self._stale = False
        self._commits = 0
        # False: a manual jump runs every job at every one of its times, `due` and
        # `catch_up` ignored (to compare the two walks).
        self.skip_idle = True

    def start(self) -> None:
        self._aps.start(paused=self.clock.manual)

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)

    def every(
        self, job_id: str, interval: timedelta, function: JobFunction, *,
        due: Due | None = None, catch_up: bool = False,
    ) -> None:
        """Runs `function` every `interval`. `due` and `catch_up` only matter to a manual
        clock's jumps (module docstring)."""
        start = self.clock.now() + interval
        trigger = IntervalTrigger(seconds=interval.total_seconds(), start_date=start)
        self._add(job_id, trigger, function)
        if due is not None or catch_up:
            self._jumps[job_id] = _Jump(interval, due, catch_up)
        else:
            self._jumps.pop(job_id, None)

    def daily(self, job_id: str, at: time, tz: str, function: JobFunction) -> None:
        """Runs `function` every day at `at` in time zone `tz`; scheduling the same again is a
        no-op, so callers may re-sync schedules from the database as often as they like."""
        if self._daily.get(job_id) == (at, tz) and self._aps.get_job(job_id):
            return
        self._daily[job_id] = (at, tz)
        self._jumps.pop(job_id, None)
        self._add(job_id, CronTrigger(hour=at.hour, minute=at.minute, timezone=tz), function)

    def _add(self, job_id: str, trigger, function: JobFunction) -> None:
        # The first run is computed from our clock, not the machine's.
        first = trigger.get_next_fire_time(None, self.clock.now())
        self._aps.add_job(
            function, trigger, id=job_id, replace_existing=True, next_run_time=first, name=job_id
        )

    def changed(self) -> None:
        """A job's transaction committed: during a jump, the jobs' `due` are asked again."""
        self._stale = True
        self._commits += 1

    async def advance_to(self, target: datetime) -> None:
        """Moves a manual clock to `target`, running the jobs due on the way, in time order,
        by the rule of the module docstring."""
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise TypeError("only a manual clock is moved by hand")
        dues: dict[str, datetime | None] = {}  # each `due` answer, until something commits
        plan: dict[str, tuple[Job, datetime | None]] = {}  # each job's next run in this jump
        # Each job's next time once it ran, written to APScheduler at the end (cheaper).
        times: dict[str, tuple[Job, datetime]] = {}
        caught_up: set[str] = set()  # catch-up jobs that ran (and committed) in this jump
        last: tuple[datetime, str] | None = None  # the last run: (time, job id)
        walked = False

        def next_time(job: Job) -> datetime | None:
            own = times.get(job.id)
            return own[1] if own is not None and own[0] is job else job.next_run_time

        try:
            while True:
                if self._stale:
                    dues.clear()
                    plan.clear()
                    self._stale = False
                chosen: tuple[datetime, str, Job] | None = None
                for job in self._aps.get_jobs():
                    planned = plan.get(job.id)
                    if planned is not None and planned[0] is job:
                        at = planned[1]
                    else:  # new, just run, replaced, or to be asked again
                        at = next_time(job)
                        if (at is not None and at <= target and job.id in self._jumps
                                and self.skip_idle):
                            at = await self._next_run(job, at, dues, caught_up, last)
                        plan[job.id] = (job, at)
                    if at is None or at > target:
                        continue
                    if chosen is None or (at, job.id) < chosen[:2]:
                        chosen = (at, job.id, job)
                if chosen is None:
                    walked = True
                    break
                fire_time, _, job = chosen
                if fire_time > clock.now():
                    clock.set(fire_time)
                following = job.trigger.get_next_fire_time(fire_time, fire_time)
                if following is None:
                    times.pop(job.id, None)
                    job.remove()
                else:
                    times[job.id] = (job, following)
                plan.pop(job.id)
                last = (fire_time, job.id)
                commits = self._commits
                await job.func()
                if self._commits != commits:
                    caught_up.add(job.id)
        finally:
            for job in self._aps.get_jobs():
                at = next_time(job)
                jump = self._jumps.get(job.id)
                # The times skipped count as run: the next is the first after the jump.
                if walked and jump and at is not None and at <= target:
                    at = _first_time(at, jump.interval, target + timedelta.resolution)
                if at != job.next_run_time:
                    job.modify(next_run_time=at)
        if target > clock.now():
            clock.set(target)

    async def _next_run(
        self, job: Job, at: datetime, dues: dict[str, datetime | None], caught_up: set[str],
        last: tuple[datetime, str] | None,
    ) -> datetime | None:
        """When a job with a jump rule, with a time in this jump, runs next in it (None: not
        in it). A job skipped so far runs at none of its times before the last run (in time,
        then id, order): those have passed. `at` is its next time."""
        jump = self._jumps[job.id]
        if jump.catch_up:
            return None if job.id in caught_up else at
        assert jump.due is not None  # a jump rule has one or the other
        if job.id not in dues:
            try:
                dues[job.id] = await jump.due()
            except Exception:
                log.exception("asking when job %s is due failed; it runs at all its times", job.id)
                dues[job.id] = at
        due = dues[job.id]
        if due is None:
            return None
        at = _first_time(at, jump.interval, max(due, last[0]) if last else due)
        if last is not None and (at, job.id) <= last:
            at += jump.interval
        return at


def _first_time(time_: datetime, interval: timedelta, moment: datetime) -> datetime:
    """The first of `time_ + n × interval` (n >= 0) at or after `moment`."""
    if moment <= time_:
        return time_
    return time_ + -((time_ - moment) // interval) * interval

"""The manual clock's jumps (bot/scheduler.py): jobs with `due` run only at their own times
at or after it, in time then id order; catch-up jobs once a jump; the others at every time."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from bot.clock import ManualClock
from bot.scheduler import Scheduler

START = datetime(2026, 2, 10, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
ID_ORDER = ["after", "sweep", "sync", "idle", "retry", "digest"]  # the jobs' ids: a. to f.


def hm(when: datetime) -> str:
    """`<days after START>d<HH:MM UTC>`."""
    when = when.astimezone(UTC)
    return f"{(when - START).days}d{when:%H:%M}"


async def test_a_jump_runs_jobs_at_their_own_times_when_they_have_work():
    clock = ManualClock(START)
    scheduler = Scheduler(clock)
    scheduler.start()
    fired: list[tuple[str, str]] = []
    work = {"sweep": [START + timedelta(hours=2, minutes=1)]}  # moments the sweep has work

    def recorder(name, then=None):
        async def run():
            fired.append((name, hm(clock.now())))
            if then:
                then()
            scheduler.changed()  # as App.run_job does once a job's transaction committed
        return run

    async def sweep_due():
        return min((m for m in work["sweep"] if m >= clock.now()), default=None)

    def sweep_done():
        work["sweep"] = [m for m in work["sweep"] if m > clock.now()]
        work["sweep"].append(clock.now() + timedelta(hours=5))  # more work later
        work["after"] = [clock.now()]

    async def after_due():  # work made by the sweep's run
        return min(work.get("after", []), default=None)

    def after_done():
        work["after"] = []

    scheduler.every("b.sweep", timedelta(minutes=5), recorder("sweep", sweep_done), due=sweep_due)
    scheduler.every("a.after", timedelta(minutes=5), recorder("after", after_done), due=after_due)
    scheduler.every("c.sync", timedelta(minutes=5), recorder("sync"), catch_up=True)
    scheduler.every("d.idle", timedelta(hours=1), recorder("idle"), due=_never)
    scheduler.every("e.retry", timedelta(minutes=30), recorder("retry"))
    scheduler.daily("f.digest", time(20, 0), "Asia/Shanghai", recorder("digest"))

    await scheduler.advance_to(START + timedelta(hours=12))
    retries = [("retry", f"0d{h:02d}:{m:02d}") for h in range(1, 14) for m in (0, 30)][1:-1]
    expected = sorted(retries + [
        ("sync", "0d01:05"),  # once in the jump
        ("sweep", "0d03:05"),  # its work is at 03:01: its first time at or after that
        # The work the sweep made at 03:05: the other job's 03:05 came first (id order), so
        # its next time, 03:10, is when it sees it.
        ("after", "0d03:10"),
        ("sweep", "0d08:05"), ("after", "0d08:10"),
        ("digest", "0d12:00"),  # 20:00 in Shanghai, after the retry of 12:00 (id order)
    ], key=lambda run: (run[1], ID_ORDER.index(run[0])))
    assert fired == expected
    assert clock.now() == START + timedelta(hours=12)

    # After the jump each job's next time is its first after the target, on its own grid.
    times = {job.id: hm(job.next_run_time) for job in scheduler._aps.get_jobs()}
    assert times == {"a.after": "0d13:05", "b.sweep": "0d13:05", "c.sync": "0d13:05",
                     "d.idle": "0d14:00", "e.retry": "0d13:30", "f.digest": "1d12:00"}

    # Walking every time instead (as a deployment does): every job at each of its times.
    fired.clear()
    scheduler.skip_idle = False
    await scheduler.advance_to(START + timedelta(hours=13))
    assert [name for name, _ in fired].count("sync") == 12
    assert ("idle", "0d14:00") in fired and len(fired) == 12 * 3 + 1 + 2
    scheduler.shutdown()


async def _never():
    return None


async def test_a_catch_up_job_runs_again_until_a_run_commits():
    """A run that committed nothing (another instance held the jobs lease) does not count."""
    clock = ManualClock(START)
    scheduler = Scheduler(clock)
    scheduler.start()
    fired: list[str] = []

    async def sync():
        fired.append(hm(clock.now()))
        if clock.now() >= START + timedelta(minutes=15):  # the lease is ours from 01:15
            scheduler.changed()

    scheduler.every("sync", timedelta(minutes=5), sync, catch_up=True)
    await scheduler.advance_to(START + timedelta(hours=1))
    assert fired == ["0d01:05", "0d01:10", "0d01:15"]
    scheduler.shutdown()

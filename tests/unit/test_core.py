"""Core mechanisms: message splitting, the manual-clock scheduler, template parity."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from importlib.resources import files

from bot.clock import ManualClock
from bot.scheduler import Scheduler
from bot.transports.base import split_text


def test_split_text_cuts_at_section_boundaries():
    sections = [f"section {i}\n" + "\n".join(["line"] * 30) for i in range(20)]
    text = "\n\n".join(sections)
    parts = split_text(text, 1000)
    assert all(len(p) <= 1000 for p in parts)
    assert "\n\n".join(parts) == text
    assert all(p.startswith("section ") for p in parts)


def test_split_text_cuts_an_oversized_line_hard():
    parts = split_text("x" * 2500, 1000)
    assert [len(p) for p in parts] == [1000, 1000, 500]


async def test_manual_scheduler_fires_due_jobs_in_time_order_with_clock_at_each_time():
    clock = ManualClock(datetime(2026, 2, 10, 11, 50, tzinfo=UTC))  # 19:50 in Shanghai
    scheduler = Scheduler(clock)
    scheduler.start()
    fired: list[tuple[str, datetime]] = []

    def recorder(name):
        async def run():
            fired.append((name, clock.now()))
        return run

    scheduler.daily("digest", time(20, 0), "Asia/Shanghai", recorder("digest"))
    scheduler.every("sweep", timedelta(minutes=4), recorder("sweep"))
    await scheduler.advance_to(clock.now() + timedelta(minutes=13))
    assert [name for name, _ in fired] == ["sweep", "sweep", "digest", "sweep"]
    assert fired[2][1] == datetime(2026, 2, 10, 12, 0, tzinfo=UTC)
    assert clock.now() == datetime(2026, 2, 10, 12, 3, tzinfo=UTC)
    await scheduler.advance_to(clock.now() + timedelta(days=1))
    assert [name for name, _ in fired].count("digest") == 2
    scheduler.shutdown()


def test_every_template_exists_in_both_languages():
    root = files("templates")

    def names(lang):
        base = root.joinpath(lang)
        found = set()
        stack = [(base, "")]
        while stack:
            folder, prefix = stack.pop()
            for entry in folder.iterdir():
                if entry.is_dir():
                    stack.append((entry, prefix + entry.name + "/"))
                else:
                    found.add(prefix + entry.name)
        return found

    assert names("zh") == names("en")

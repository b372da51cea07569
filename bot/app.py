"""The app: wires configuration, database, clock, scheduler, renderer, outbox, dispatcher
and transports, and runs scheduled jobs."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from bot.clock import Clock
from bot.config import Config
from bot.context import JobContext
from bot.context_cache import ContextCache
from bot.dispatch import Dispatcher
from bot.i18n import Renderer
from bot.outbox import Outbox
from bot.people import People
from bot.registry import REGISTRY
from bot.scheduler import Scheduler
from bot.transports.base import Incoming, Transport
from storage import models
from storage.db import Database

log = logging.getLogger(__name__)

OUTBOX_RETRY = timedelta(minutes=1)
# Longer than the gap between two runs of the sweeps, so the holder keeps it while alive.
JOBS_LEASE = timedelta(minutes=10)
STOP_TIMEOUT = 30  # seconds a running job may take to finish when stopping


class App:
    def __init__(
        self, config: Config, clock: Clock | None = None, instance_id: str | None = None
    ) -> None:
        # The app is given its command modules by the configuration; importing each declares
        # its commands, jobs, hooks and digest sections (bot/registry.py).
        for module in config.modules:
            importlib.import_module(module)
        self.config = config
        self.clock = clock or Clock()
        # Names this deployment in outbox leases: stable across restarts (so a restarted bot
        # delivers what it had queued at once), different on each host of a multi-instance setup.
        self.instance_id = instance_id or _instance_id(config)
        self.db = Database(config.db_url)
        self.renderer = Renderer(self.clock)
        self.scheduler = Scheduler(self.clock)
        self.transports: dict[str, Transport] = {}
        self.people = People(config, self.transports)
        self.outbox = Outbox(self)
        self.dispatcher = Dispatcher(self)
        self.context_cache = ContextCache(
            self.db.engine.sync_engine, shared=not self.db.is_sqlite
        )
        self.bot_usernames: set[str] = set()  # filled by transports: `/cmd@name` for us
        self._running_jobs: set[asyncio.Task] = set()

    async def start(self, transports: Iterable[Transport] = ()) -> None:
        if self.db.is_sqlite:
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await self.db.migrate()
        self.scheduler.start()
        for job in REGISTRY.jobs:
            self.scheduler.every(
                job.name, job.every, self._job_runner(job.function),
                due=self._due_asker(job.due) if job.due else None, catch_up=job.catch_up,
            )
        self.scheduler.every("outbox", OUTBOX_RETRY, self.outbox.retry)
        await self.emit("startup")
        # Whatever was accepted but not sent before a restart is queued before any transport
        # starts receiving, so each chat's old replies go out before the new ones.
        self.outbox.hold()
        pending = self.outbox.enqueue(await self.outbox.claim_pending())
        try:
            for transport in transports:
                self.transports[transport.name] = transport
                await transport.start(self)
        finally:
            self.outbox.release()
        await self.outbox.wait(pending)

    async def stop(self) -> None:
        """Stops gracefully: no new jobs, the running one finishes; each transport stops
        taking messages, finishes the one in hand and saves its offset or sync token; what
        is queued is delivered, and what cannot go out now stays in the outbox for the next
        start; then the database closes."""
        self.scheduler.shutdown()
        # Reading stops first, everywhere: otherwise a transport would go on taking new
        # messages (and the outbox new replies) while the jobs and the outbox are waited for,
        # and a steady flow of commands could hold the stop off indefinitely.
        for transport in list(self.transports.values()):
            stop_taking = getattr(transport, "stop_taking", None)
            if stop_taking is None:
                continue
            try:
                await stop_taking()
            except Exception:
                log.exception("stopping transport %s", transport.name)
        if self._running_jobs:
            await asyncio.wait(set(self._running_jobs), timeout=STOP_TIMEOUT)
        await self.outbox.idle()
        for transport in list(self.transports.values()):
            try:
                await transport.stop()
            except Exception:
                log.exception("stopping transport %s", transport.name)
        self.transports.clear()
        await self.db.close()

    async def handle(self, message: Incoming, *, wait_for_delivery: bool = True) -> None:
        """Handles one incoming message. A network transport passes wait_for_delivery=False
        to go on reading while replies wait for rate limits; they are committed already."""
        await self.dispatcher.handle(message, wait_for_delivery=wait_for_delivery)

    async def run_job(self, function: Callable[[JobContext], Awaitable[None]]) -> None:
        """Runs one job in its own transaction; what it writes goes to the audit log like a
        command's, and its messages are delivered after commit."""
        name = _job_name(function)
        task = asyncio.current_task()
        assert task is not None  # a coroutine runs in a task
        self._running_jobs.add(task)
        try:
            await self._run_job(name, function)
        finally:
            self._running_jobs.discard(task)

    async def _run_job(self, name: str, function: Callable[[JobContext], Awaitable[None]]) -> None:
        if not await self._lead_jobs():
            return  # another instance on this database runs the jobs
        try:
            async with self.db.transaction() as db:
                changes: list[dict[str, Any]] = []
                db.info["audit"] = changes
                jc = JobContext(app=self, db=db, now=self.clock.now())
                await function(jc)
                await jc.seal()
                await db.flush()
                del db.info["audit"]
                if changes:
                    db.add(models.AuditEntry(at=jc.now, command=f"job:{name}", changes=changes))
        except Exception:
            log.exception("job %s failed", name)
            return
        self.scheduler.changed()
        for event, values in jc.events:
            await self.emit(event, **values)
        await self.outbox.deliver(jc.queued)

    async def _lead_jobs(self) -> bool:
        """Takes or renews the lease on running jobs. Several instances on one database each
        keep a scheduler, but only the lease holder acts, so no reminder goes out twice;
        when it stops renewing (it died), another takes over once the lease runs out."""
        now = self.clock.now()
        try:
            async with self.db.transaction() as db:
                lease = await db.get(models.Lease, "jobs", with_for_update=True)
                if lease is None:
                    lease = models.Lease(name="jobs", owner=self.instance_id, until=now)
                    db.add(lease)
                elif lease.owner != self.instance_id and lease.until > now:
                    return False
                lease.owner = self.instance_id
                lease.until = now + JOBS_LEASE
        except IntegrityError:
            return False  # another instance created the lease at the same moment
        return True

    def _job_runner(self, function):
        async def run() -> None:
            await self.run_job(function)

        return run

    def _due_asker(self, due: Callable[[JobContext], Awaitable[datetime | None]]):
        """Asks a job's `due` (bot/registry.py), reading the database as it is now."""

        async def ask() -> datetime | None:
            async with self.db.transaction() as db:
                return await due(JobContext(app=self, db=db, now=self.clock.now()))

        return ask

    async def emit(self, event: str, **values) -> None:
        """Calls the hooks declared for `event` (e.g. a domain rescheduling its jobs)."""
        for hook in REGISTRY.hooks.get(event, ()):
            await hook(self, **values)


def _instance_id(config: Config) -> str:
    where = f"{socket.gethostname()}:{config.data_dir.resolve()}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]


def _job_name(function) -> str:
    while isinstance(function, functools.partial):
        function = function.func
    return getattr(function, "__name__", repr(function))

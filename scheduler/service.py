"""APScheduler set-up: interval jobs that run only while this instance holds the lease.

Jobs are plain ``async (now) -> count`` callables wired by the composition root (``bot/``); each selects due
work by state, so a job that did not run for a while catches up on its next run. Every job takes the time as a
parameter, which is how tests drive them with a clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from scheduler.lease import give_back, hold
from storage.clock import utcnow
from storage.database import SessionFactory
from storage.fallbacks import APSCHEDULER_PENDING, library, took_fallback

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)

_PENDING_FUTURES = "_pending_futures"
"""Where APScheduler's ``AsyncIOExecutor`` keeps the runs it started (private: see ``Scheduler._submitted``)."""


@dataclass(frozen=True)
class Job:
    name: str
    every: timedelta
    run: Callable[[datetime], Awaitable[int]]


class Scheduler:
    def __init__(
        self,
        sessions: SessionFactory,
        jobs: list[Job],
        *,
        holder: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions, self.jobs, self.clock = sessions, jobs, clock
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self._aps: AsyncIOScheduler | None = None
        self._executor: AsyncIOExecutor | None = None
        self._running: set[asyncio.Task[object]] = set()
        self._missed: set[str] = set()
        """Jobs whose last run found the lease someone else's: run as soon as this instance takes it."""

    async def holds_lease(self, now: datetime) -> bool:
        async with self.sessions() as session:
            held = await hold(session, self.holder, now, LEASE)
        if held and self._missed and self._aps is not None:
            # Just taken over (the holder stopped or died): what fell due meanwhile goes now, not an interval later.
            missed, self._missed = sorted(self._missed), set()
            log.info("took the scheduler lease; running %s now", ", ".join(missed))
            for name in missed:  # APScheduler times runs by the wall clock, whatever clock the jobs are given
                self._aps.modify_job(name, next_run_time=datetime.now(UTC))
        return held

    async def holds_lease_now(self) -> bool:
        """The lease's renewal, a job of its own: tracked as a job's run is, so that ``stop`` waits for it."""
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            return await self.holds_lease(self.clock())
        finally:
            if task is not None:
                self._running.discard(task)

    async def run_job(self, job: Job) -> int | None:
        """One run of a job if this instance holds the lease; None when it does not."""
        now = self.clock()
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            if not await self.holds_lease(now):
                self._missed.add(job.name)
                return None
            done = await job.run(now)
        except Exception:  # a failing job must not stop the others; it runs again on its next interval
            log.exception("scheduled job %s failed", job.name)
            return None
        finally:
            if task is not None:
                self._running.discard(task)
        if done:
            log.info("job %s: %d done", job.name, done)
        return done

    def start(self) -> None:
        # The scheduler's default executor, made here so that ``stop`` holds it without asking APScheduler.
        self._executor = AsyncIOExecutor()
        self._aps = AsyncIOScheduler(timezone="UTC", executors={"default": self._executor})
        for job in self.jobs:
            # First run at start-up: whatever fell due while no scheduler ran goes out now.
            self._aps.add_job(
                self.run_job,
                "interval",
                args=[job],
                seconds=job.every.total_seconds(),
                next_run_time=datetime.now(UTC),
                id=job.name,
                max_instances=1,
                coalesce=True,
            )
        # Renewed on its own beat, well inside its lifetime: jobs may run minutes apart.
        self._aps.add_job(
            self.holds_lease_now,
            "interval",
            seconds=LEASE.total_seconds() / 4,
            id="lease",
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
        )
        self._aps.start()

    async def stop(self) -> None:
        """Start no more jobs and let the running ones finish: a message is never cut off half sent."""
        if self._aps is not None:
            # Pause, wait, then shut down: APScheduler's shutdown cancels the jobs its executor still runs, which
            # would cut a job off mid-way (and log a CancelledError for every job started just before a stop).
            self._aps.pause()
            submitted = await self._submitted()  # first: without APScheduler's list, runs just begun join _running
            await asyncio.gather(*submitted, *self._running, return_exceptions=True)
            self._aps.shutdown(wait=False)
            self._aps = self._executor = None
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        try:
            async with self.sessions() as session:
                await give_back(session, self.holder, self.clock())
        except Exception:  # the lease then simply expires, as a crashed holder's does
            log.warning("could not give the scheduler lease back", exc_info=True)

    async def _submitted(self) -> list[asyncio.Future[object]]:
        """The runs the executor has started and not finished, including tasks that have not yet taken their
        first step. APScheduler keeps them in a private attribute, ``AsyncIOExecutor._pending_futures``."""
        pending = getattr(self._executor, _PENDING_FUTURES, None)
        if isinstance(pending, set):
            return [future for future in pending if not future.done()]
        # Without it: each run is a task that calls ``run_job`` or ``holds_lease_now`` in its first step, and
        # both add the task to ``_running`` before they first wait. One turn of the loop lets every task already
        # created take that step (pause() has stopped new ones).
        took_fallback(APSCHEDULER_PENDING, f"{library('apscheduler')}: AsyncIOExecutor has no {_PENDING_FUTURES} set")
        await asyncio.sleep(0)
        return []

    async def run_until(self, stop: asyncio.Event) -> None:
        self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

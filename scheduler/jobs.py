"""The table of scheduled jobs: what runs how often. The bodies live in ``notifications`` (what is sent) and
``loyalty`` (what only changes data); this module only names and times them, and counts their runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

from aiogram import Bot
from aiogram.utils.i18n import I18n
from prometheus_client import Counter

from loyalty import metrics, pending
from loyalty.expiry import expire_points
from loyalty.program import Program
from loyalty.roles import StaticRoles
from notifications import reminders, support, surveys, vip
from notifications.broadcasting import Broadcaster
from scheduler.service import Job, Scheduler
from storage.database import SessionFactory

JOB_RUNS = Counter("loyalty_job_runs_total", "Scheduled job runs, by job and outcome", ["job", "outcome"])


class JobServices(Protocol):
    """What the jobs are handed: the composition root's ``bot.services.Services`` fits it."""

    @property
    def bot(self) -> Bot: ...
    @property
    def sessions(self) -> SessionFactory: ...
    @property
    def program(self) -> Program: ...
    @property
    def i18n(self) -> I18n: ...
    @property
    def roles(self) -> StaticRoles: ...
    @property
    def support_chat_id(self) -> int | None: ...
    @property
    def broadcaster(self) -> Broadcaster: ...
    @property
    def clock(self) -> Callable[[], datetime]: ...


def counted_job(name: str, run: Callable[[datetime], Awaitable[int]]) -> Callable[[datetime], Awaitable[int]]:
    """A scheduled job that counts its runs; the scheduler still logs and survives a failure."""

    async def wrapped(now: datetime) -> int:
        try:
            done = await run(now)
        except Exception:
            JOB_RUNS.labels(name, "error").inc()
            raise
        JOB_RUNS.labels(name, "ok").inc()
        return done

    return wrapped


def jobs(services: JobServices) -> list[Job]:
    # Every job counts its runs in the metrics (loyalty_job_runs_total).
    return [Job(job.name, job.every, counted_job(job.name, job.run)) for job in _jobs(services)]


def _jobs(services: JobServices) -> list[Job]:
    bot, sessions, i18n = services.bot, services.sessions, services.i18n

    def to_members(send: Callable[..., Awaitable[int]], *after: object) -> Callable[[datetime], Awaitable[int]]:
        """A job run under the program in force when it runs: a new revision counts from the next run."""

        async def run(now: datetime) -> int:
            return await send(bot, sessions, services.program, i18n, *after, now)

        return run

    async def overdue(now: datetime) -> int:
        return await support.report_overdue(bot, sessions, services.support_chat_id, services.program, i18n, now)

    async def release(now: datetime) -> int:
        return await pending.release_points(sessions, services.program, now)

    async def snapshots(now: datetime) -> int:
        return await metrics.refresh_snapshots(sessions, services.program, now)

    return [
        Job("birthdays", timedelta(minutes=5), to_members(reminders.send_birthday_offers)),
        Job("winback", timedelta(minutes=15), to_members(reminders.send_winback_nudges)),
        Job("expire", timedelta(hours=1), partial(expire_points, sessions)),
        # Points of purchases past their return window ([earn] pending_days) become spendable.
        Job("release-pending", timedelta(minutes=1), release),
        Job("checkin-reminders", timedelta(minutes=15), to_members(reminders.send_checkin_reminders)),
        Job("expiry-warnings", timedelta(minutes=30), to_members(reminders.send_expiry_warnings)),
        Job("surveys", timedelta(minutes=5), to_members(surveys.send_due_surveys)),
        Job("overdue-threads", timedelta(minutes=5), overdue),
        Job("tier-review", timedelta(hours=6), to_members(reminders.review_member_tiers)),
        Job("vip-gifts", timedelta(minutes=15), to_members(vip.send_vip_gifts)),
        Job("vip-reminders", timedelta(minutes=30), to_members(vip.send_vip_reminders)),
        # A subscribed VIP that ended without a renewal: the member is told once.
        Job("vip-lapses", timedelta(minutes=15), to_members(vip.send_vip_lapses)),
        Job("digest", timedelta(minutes=30), to_members(reminders.send_weekly_digest, services.roles)),
        # Starts scheduled broadcasts and resumes any a restart interrupted.
        Job("broadcasts", timedelta(seconds=10), partial(services.broadcaster.tick, bot)),
        # /stats on a large program takes seconds of database work: keep the standard periods ready.
        Job("stats-snapshots", timedelta(minutes=10), snapshots),
    ]


def make_scheduler(services: JobServices) -> Scheduler:
    # The handlers' clock, so that a clock the demo moves forward moves the jobs' "now" with it.
    return Scheduler(services.sessions, jobs(services), clock=services.clock)

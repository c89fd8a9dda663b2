"""The scheduler's jobs, wired here because they join two layers: ``scheduler`` runs them, ``handlers`` word
and send the messages."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from bot.metrics import counted_job
from handlers import nps, reminders, support, vip
from loyalty import metrics
from scheduler.service import Job, Scheduler

if TYPE_CHECKING:  # the runner imports this module
    from bot.runner import App


def jobs(app: App) -> list[Job]:
    # Every job counts its runs in the metrics (loyalty_job_runs_total).
    return [Job(job.name, job.every, counted_job(job.name, job.run)) for job in _jobs(app)]


def _jobs(app: App) -> list[Job]:
    bot, sessions, program = app.bot, app.sessions, app.program
    i18n, desk = app.dispatcher["i18n"], app.dispatcher["desk"]
    messages = (bot, sessions, program, i18n)

    async def expire(now: datetime) -> int:
        return await reminders.expire_points(sessions, now)

    return [
        Job("birthdays", timedelta(minutes=5), partial(reminders.send_birthday_offers, *messages)),
        Job("winback", timedelta(minutes=15), partial(reminders.send_winback_nudges, *messages)),
        Job("expire", timedelta(hours=1), expire),
        Job("expiry-warnings", timedelta(minutes=30), partial(reminders.send_expiry_warnings, *messages)),
        Job("surveys", timedelta(minutes=5), partial(nps.send_due_surveys, *messages)),
        Job(
            "overdue-threads", timedelta(minutes=5), partial(support.report_overdue, bot, sessions, desk, program, i18n)
        ),
        Job("tier-review", timedelta(hours=6), partial(reminders.review_member_tiers, *messages)),
        Job("vip-gifts", timedelta(minutes=15), partial(vip.send_vip_gifts, *messages)),
        Job("vip-reminders", timedelta(minutes=30), partial(vip.send_vip_reminders, *messages)),
        Job("digest", timedelta(minutes=30), partial(reminders.send_weekly_digest, *messages, app.settings)),
        # Starts scheduled broadcasts and resumes any a restart interrupted.
        Job("broadcasts", timedelta(seconds=10), partial(app.dispatcher["broadcaster"].tick, bot)),
        # /stats on a large program takes seconds of database work: keep the standard periods ready.
        Job("stats-snapshots", timedelta(minutes=10), partial(metrics.refresh_snapshots, sessions, program)),
    ]


def make_scheduler(app: App) -> Scheduler:
    return Scheduler(app.sessions, jobs(app))

"""The app's daily check-in (the home screen's Check in button, a make-up, the evening reminder) and its missions
screen with progress bars. Each calls the ``loyalty`` function /checkin and /missions call."""

from __future__ import annotations

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext
from aiohttp import web
from pydantic import Field

from loyalty import checkin, missions
from loyalty.ledger import InsufficientPoints
from loyalty.program import Program
from notifications import engagement
from notifications.texts import day, locale_of
from web.miniapp.core import LANGUAGE, VIEWER, Action, Model, Refused, Screen, json_of, mount, read, require
from web.services import SERVICES


def _member_id(request: web.Request) -> int:
    require(request, member=True)
    member = request[VIEWER].member
    assert member is not None
    return member.id


class CheckinOut(Model):
    """The check-in as the home screen shows it."""

    checked_in: bool = Field(description="Checked in for today already")
    streak: int = Field(description="Consecutive local days checked in, through today or yesterday")
    streak_text: str
    next_text: str | None = Field(description="How far the next streak milestone is, and what it pays")
    can_check_in: bool
    opens: str | None = Field(description="A member too new to check in: the date it opens for them")
    makeup_label: str | None = Field(description="The make-up button's label, when yesterday can be made up")
    reminders: bool = Field(description="The opt-in evening reminder is on")


async def checkin_of(request: web.Request, member_id: int) -> CheckinOut | None:
    """The home screen's check-in panel (None when the program has no check-in)."""
    services = request.app[SERVICES]
    program, language = services.program, request[LANGUAGE]
    if not program.checkin.enabled:
        return None
    async with services.sessions() as session:
        status = await checkin.status(session, program, member_id, services.clock())
        reminders = await checkin.reminders_on(session, member_id)
    return _out(status, program, language, reminders)


def _out(status: checkin.Status, program: Program, language: str, reminders: bool) -> CheckinOut:
    label = None
    if status.can_make_up:
        label = ngettext(
            "🩹 Make up yesterday for {cost} point", "🩹 Make up yesterday for {cost} points", status.makeup_cost
        ).format(cost=status.makeup_cost)
    upcoming = engagement.next_line(status.next_milestone, status.days_to_next, program, language, escape=False)
    opens = None
    if status.eligible_at is not None:
        opens = day(status.eligible_at, program.tz, locale_of(language))
    return CheckinOut(
        checked_in=status.checked_in,
        streak=status.streak,
        streak_text=engagement.streak_line(status),
        next_text=upcoming,
        can_check_in=not status.checked_in and status.eligible_at is None,
        opens=opens,
        makeup_label=label,
        reminders=reminders,
    )


class CheckinIn(Model):
    pass


class CheckedIn(Model):
    message: str
    points: int = Field(description="Paid by this check-in, milestones included")
    streak: int
    balance: int
    replayed: bool = Field(description="Already checked in for this day: nothing changed")


async def _answer(request: web.Request, makeup: bool) -> web.Response:
    services = request.app[SERVICES]
    program, language = services.program, request[LANGUAGE]
    member_id = _member_id(request)
    await read(request, CheckinIn)
    async with services.sessions() as session:
        try:
            if makeup:
                result = await checkin.make_up(session, program, member_id, services.clock())
            else:
                result = await checkin.check_in(session, program, member_id, services.clock())
        except checkin.CheckinRefused as refused:
            raise Refused(
                409, refused.refusal.value, engagement.refusal(refused, program, locale_of(language))
            ) from refused
        except InsufficientPoints as short:
            raise Refused(
                409, "insufficient_points", engagement.short_of_points(short.needed, short.balance)
            ) from short
    lines = engagement.result_lines(result, program, language, escape=False)
    out = CheckedIn(
        message="\n".join(lines),
        points=result.points,
        streak=result.status.streak,
        balance=result.balance,
        replayed=not result.created,
    )
    return json_of(out, 201 if result.created else 200)


async def check_in(request: web.Request) -> web.Response:
    return await _answer(request, makeup=False)


async def make_up(request: web.Request) -> web.Response:
    return await _answer(request, makeup=True)


class RemindersIn(Model):
    on: bool


class RemindersOut(Model):
    message: str


async def set_reminders(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    member_id = _member_id(request)
    body = await read(request, RemindersIn)
    async with services.sessions() as session:
        await checkin.set_reminders(session, member_id, body.on)
    message = (
        _("🔔 We will remind you in the evening if you have not checked in.")
        if body.on
        else _("🔕 No more evening reminders.")
    )
    return json_of(RemindersOut(message=message))


# ------------------------------------------------------------------------------------------------ missions


class MissionOut(Model):
    key: str
    name: str
    prize: str = Field(description="What it pays: points and/or a coupon")
    value: str = Field(description="How far along, e.g. 2 / 3 or ¥120.00 / ¥200.00")
    percent: int = Field(ge=0, le=100)
    done: bool
    until: str


class MissionsOut(Model):
    missions: list[MissionOut]
    completed: list[str] = Field(description="Missions this visit found reached and paid just now")


async def load_missions(request: web.Request) -> MissionsOut:
    services = request.app[SERVICES]
    program, language = services.program, request[LANGUAGE]
    locale = locale_of(language)
    member_id = _member_id(request)
    now = services.clock()
    async with services.sessions() as session:
        # As /missions: a mission reached but not paid yet (the program changed, say) is paid on opening.
        done = await missions.settle(session, program, member_id, now)
        items = await missions.progress(session, program, member_id, now)
    return MissionsOut(
        missions=[
            MissionOut(
                key=item.rule.key,
                name=item.rule.name_in(language),
                prize=engagement.prize(item.rule.points, item.rule.reward, program, language, escape=False),
                value=engagement.mission_value(item, program, locale),
                percent=item.percent,
                done=item.paid,
                until=engagement.mission_ends(item, program, locale),
            )
            for item in items
        ],
        completed=[item.rule.name_in(language) for item in done],
    )


SCREENS = [Screen("missions", load_missions, "missions.html", MissionsOut, "Missions and how far along they are")]
ACTIONS = [
    Action("checkin", check_in, CheckinIn, CheckedIn, "Check in for today (once per local day)"),
    Action("checkin/makeup", make_up, CheckinIn, CheckedIn, "Make up a missed yesterday, paid in points"),
    Action("checkin/reminders", set_reminders, RemindersIn, RemindersOut, "Turn the evening reminder on or off"),
]


def setup(app: web.Application, base: str) -> None:
    mount(app, base, SCREENS, ACTIONS)

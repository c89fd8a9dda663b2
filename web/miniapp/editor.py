"""The console's Program editor, for admins: every section of the program as a form, checked as the admin types by
the program's own models, a preview of what a sample purchase earns now and under the edit, and saving as a new
revision; the revision history with "Make current" (a rollback), and the program file to download or import.

Forms are made from the pydantic models in ``loyalty.program`` (``form_fields``): a field's kind comes from its
type and its label from ``LABELS``, so a key added to a model shows up here with its own name until it gets a
label. Every endpoint checks on the server that the viewer is an admin. Saving goes through
``loyalty.editor.save_section`` / ``loyalty.revisions``, which refuse an edit started from a revision that is no
longer in force and write the audit log; other processes hear of the new revision through Redis (or read it
within seconds), and this one puts it in force at once."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from decimal import Decimal
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext
from aiohttp import web
from annotated_types import MaxLen
from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from loyalty import editor
from loyalty.editor import GENERAL, GENERAL_KEYS, SECTIONS, Sample, Unchanged
from loyalty.members import get_by_telegram_id
from loyalty.program import Program, ProgramError, parse_program, program_data
from loyalty.revisions import (
    FROM_TELEGRAM,
    Revision,
    StaleRevision,
    announce,
    current_revision,
    get_revision,
    history,
    program_toml,
    rollback_to,
    save_revision,
)
from loyalty.roles import Permission
from notifications.texts import N_, locale_of, when
from web.miniapp.core import (
    LANGUAGE,
    VIEWER,
    Action,
    Model,
    Refused,
    Screen,
    bad_input,
    json_of,
    later,
    mount,
    read,
    require,
)
from web.services import SERVICES, WebServices

MAX_EDIT = 256 * 1024  # a whole program as JSON or TOML: far above any real one, far below harm
MAX_NOTE = 500
HISTORY = 20

# ------------------------------------------------------------------------------------------------ labels

SECTION_TITLES = {
    GENERAL: N_("General"),
    "earn": N_("Earning"),
    "welcome": N_("Welcome bonus"),
    "expiry": N_("Expiry"),
    "rewards": N_("Rewards"),
    "promotions": N_("Promotions"),
    "punch_cards": N_("Punch cards"),
    "stores": N_("Stores"),
    "tiers": N_("Tiers"),
    "referrals": N_("Referrals"),
    "sharing": N_("Sharing"),
    "profile": N_("Profile"),
    "birthday": N_("Birthday"),
    "winback": N_("Win-back"),
    "nps": N_("NPS surveys"),
    "vip": N_("VIP"),
    "checkin": N_("Daily check-in"),
    "missions": N_("Missions"),
    "support": N_("Support"),
    "digest": N_("Weekly digest"),
    "analytics": N_("Analytics"),
    "api": N_("Purchases API"),
}
SECTION_ICONS = {
    GENERAL: "🏪",
    "earn": "⭐",
    "welcome": "👋",
    "expiry": "⏳",
    "rewards": "🎁",
    "promotions": "📣",
    "punch_cards": "☕",
    "stores": "🏬",
    "tiers": "🏅",
    "referrals": "👥",
    "sharing": "📤",
    "profile": "👤",
    "birthday": "🎂",
    "winback": "🔁",
    "nps": "📊",
    "vip": "💎",
    "checkin": "📅",
    "missions": "🎯",
    "support": "💬",
    "digest": "🗞",
    "analytics": "📈",
    "api": "🔌",
}
# A field's label by "section.key" (or "section.list.key"), else by key alone.
LABELS = {
    "name": N_("Name"),
    "currency": N_("Currency (ISO code, e.g. CNY)"),
    "timezone": N_("Time zone (e.g. Asia/Shanghai)"),
    "staff_language": N_("Language of messages to staff"),
    "points_per_unit": N_("Points per unit of currency"),
    "rounding": N_("Rounding"),
    "minimum_amount": N_("Smallest purchase that earns"),
    "maximum_amount": N_("Largest purchase a cashier may record"),
    "categories": N_("Categories"),
    "bonus": N_("Bonus points"),
    "welcome.bonus": N_("Points for joining"),
    "policy": N_("When points expire"),
    "days": N_("Days"),
    "expiry.days": N_("Days after earning"),
    "months": N_("Months after the month of earning"),
    "warn_days": N_("Warn members this many days before"),
    "key": N_("Key (a-z, 0-9, - and _)"),
    "title": N_("Title"),
    "cost": N_("Cost in points"),
    "stock": N_("Stock (empty: unlimited)"),
    "per_member_limit": N_("Limit per member"),
    "validity_days": N_("Coupon valid for (days)"),
    "min_tier": N_("Lowest tier that may redeem"),
    "multiplier": N_("Multiplier"),
    "starts": N_("From (date)"),
    "ends": N_("Until (date)"),
    "weekdays": N_("Weekdays (none ticked: every day)"),
    "start_time": N_("From (time)"),
    "end_time": N_("Until (time)"),
    "min_amount": N_("Minimum amount"),
    "min_items": N_("Minimum items"),
    "limit_per_member": N_("Times per member"),
    "limit_period": N_("Per"),
    "category": N_("Category"),
    "stamps": N_("Stamps for a full card"),
    "per": N_("One stamp per"),
    "reward": N_("Coupon for reward (key)"),
    "punch_cards.reward": N_("Reward for a full card (key)"),
    "basis": N_("Tiers by"),
    "window_months": N_("Over the last (months)"),
    "warning_days": N_("Warn before a step down (days)"),
    "levels": N_("Levels"),
    "enter": N_("Threshold to enter"),
    "keep": N_("Threshold to keep (empty: the same)"),
    "tiers.levels.multiplier": N_("Points multiplier"),
    "perks": N_("Perks"),
    "friend_bonus": N_("Friend's bonus"),
    "friend_bonus_on": N_("Friend's bonus paid on"),
    "referrer_bonus": N_("Referrer's bonus"),
    "qualifying_amount": N_("Friend's qualifying purchase"),
    "monthly_cap": N_("Referrals paid per month"),
    "burst_limit": N_("Joins per hour through one link before review"),
    "link": N_("Links to a post"),
    "review": N_("Reviews"),
    "photo": N_("Photos"),
    "points": N_("Points"),
    "per_day": N_("At most per day"),
    "per_month": N_("At most per month"),
    "profile.bonus": N_("Bonus for a complete profile"),
    "profile.categories": N_("Favourite categories"),
    "enabled": N_("On"),
    "hour": N_("Hour (0-23)"),
    "coupon_days": N_("Coupon valid for (days)"),
    "winback.days": N_("After days without a purchase"),
    "factor": N_("Or this many times the member's usual interval"),
    "max_nudges": N_("Nudges per lapse"),
    "cooldown_days": N_("Days between nudges"),
    "winback.bonus": N_("Bonus for coming back"),
    "bonus_days": N_("Coming back within (days)"),
    "delay_hours": N_("Hours after a purchase"),
    "min_days_between": N_("Days between surveys"),
    "window_hours": N_("Not later than (hours)"),
    "price_stars": N_("Price (Telegram Stars)"),
    "period_days": N_("Period (days)"),
    "combine": N_("With a tier's multiplier"),
    "renew": N_("Renewal"),
    "monthly_bonus": N_("Monthly bonus points"),
    "monthly_reward": N_("Monthly coupon for reward (key)"),
    "reminder_days": N_("Reminder before the end (days)"),
    "benefits": N_("Benefits"),
    "terms": N_("Terms"),
    "response_target_minutes": N_("Answer within (minutes)"),
    "weekday": N_("Weekday"),
    "point_value": N_("What a point costs you"),
    "effect_days": N_("A campaign's effect counts for (days)"),
    "holdout": N_("Holdout: share that gets nothing, to measure against (0–0.5)"),
    "holdout_rotates": N_("Never hold out the same member twice in a row"),
    "backdate_days": N_("A till may send purchases this many days late"),
    "pending_days": N_("Return window: points pending for (days)"),
    "count_pending": N_("Count purchases toward tiers while their points are pending"),
    "stores": N_("Only at these stores (keys)"),
    "stores.name": N_("Name"),
    "stores.timezone": N_("Time zone, if not the program's"),
    "tokens": N_("API tokens of its tills (names)"),
    "checkin.points": N_("Points for a check-in"),
    "day_starts": N_("A new check-in day starts at (hour)"),
    "streak": N_("Streak milestones"),
    "checkin.streak.day": N_("On day of the streak"),
    "makeup_cost": N_("A make-up check-in costs (points; 0: none)"),
    "makeups_per_month": N_("Make-up check-ins per month"),
    "checkin.monthly_cap": N_("Most check-in points per month (0: no cap)"),
    "min_member_hours": N_("Members may check in after (hours since joining)"),
    "reminder_hour": N_("Evening reminder from (hour)"),
    "goal": N_("Goal"),
    "target": N_("Target (a count, an amount or days)"),
    "period": N_("Every"),
    "missions.points": N_("Points when reached"),
    "missions.tiers": N_("Only for these tiers (names)"),
    "missions.stores": N_("Only purchases at these stores (keys)"),
}
HINTS = {
    "earn.categories": N_("Separated by commas, e.g. coffee, pastry"),
    "promotions.categories": N_("Separated by commas; empty: any"),
    "promotions.multiplier": N_("Give a multiplier (e.g. 2) or bonus points, not both"),
    "expiry.days": N_("For “days after earning”"),
    "expiry.months": N_("For “end of month”: 0 is the end of the month of earning"),
    "vip": N_("Leave price, benefits and terms empty to offer no VIP"),
    "vip.renew": N_("A subscription renews by itself every 30 days until the member cancels; period must be 30 days"),
    "earn.pending_days": N_("0: points can be spent at once; a refund inside the window cancels pending points"),
    "promotions.stores": N_("Separated by commas; empty: every store"),
    "rewards.stores": N_("Separated by commas; empty: every store"),
    "stores.tokens": N_("Names from LOYALTY_API_TOKENS, separated by commas"),
    "missions": N_("Give a period (week or month) or both dates; points, a reward key, or both"),
    "missions.tiers": N_("Separated by commas; empty: every member"),
    "missions.stores": N_("Separated by commas; empty: every store"),
}
OPTIONS = {
    "down": N_("Down"),
    "nearest": N_("To the nearest"),
    "up": N_("Up"),
    "days": N_("Days after earning"),
    "end_of_month": N_("At the end of a month"),
    "never": N_("Never"),
    "mon": N_("Mon"),
    "tue": N_("Tue"),
    "wed": N_("Wed"),
    "thu": N_("Thu"),
    "fri": N_("Fri"),
    "sat": N_("Sat"),
    "sun": N_("Sun"),
    "day": N_("Day"),
    "week": N_("Week"),
    "month": N_("Month"),
    "purchase": N_("Purchase"),
    "item": N_("Item"),
    "spend": N_("Spend"),
    "points": N_("Points earned"),
    "join": N_("Joining"),
    "first_purchase": N_("First purchase"),
    "multiply": N_("Multiply both"),
    "max": N_("The better of the two"),
    "subscription": N_("Subscription (Telegram renews it every 30 days)"),
    "one_off": N_("One-off payment per period"),
    "purchases": N_("Purchases"),
    "categories": N_("Categories tried"),
    "referrals": N_("Friends who buy"),
    "checkin_streak": N_("Check-in streak (days)"),
    "en": "English",
    "zh-Hans": "简体中文",
    "zh-Hant": "繁體中文",
}
TRANSLATED = {"_zh_hans": N_("{label} in Simplified Chinese"), "_zh_hant": N_("{label} in Traditional Chinese")}


def label_for(path: str, key: str) -> str:
    for suffix, wording in TRANSLATED.items():
        if key.endswith(suffix):
            base = key.removesuffix(suffix)
            return _(wording).format(label=label_for(path.removesuffix(suffix), base))
    text = LABELS.get(path) or LABELS.get(key)
    return _(text) if text else key.replace("_", " ").capitalize()


def section_title(section: str) -> str:
    return _(SECTION_TITLES[section]) if section in SECTION_TITLES else section


# ------------------------------------------------------------------------------------------------ forms

Kind = Literal["text", "long", "int", "decimal", "bool", "choice", "days", "words", "date", "time", "group", "rows"]


class OptionOut(Model):
    value: str
    label: str


class FieldOut(Model):
    key: str
    label: str
    hint: str | None
    kind: Kind
    value: Any = Field(description="As the program gives it (None: not given, the default applies)")
    default: Any = Field(description="The model's default, if it has one")
    required: bool
    options: list[OptionOut] = Field(default_factory=list)
    fields: list[FieldOut] = Field(default_factory=list, description="A group's fields; a list's empty row")
    rows: list[list[FieldOut]] = Field(default_factory=list, description="A list's rows")


def _plain(annotation: Any) -> Any:
    """The annotation without ``| None`` and ``Annotated``."""
    if get_origin(annotation) is Annotated:
        return _plain(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not NoneType]
        return _plain(rest[0]) if len(rest) == 1 else annotation
    return annotation


def _kind(info: FieldInfo) -> tuple[Kind, Any]:
    annotation = _plain(info.annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        return "choice", get_args(annotation)
    if origin is list:
        item = _plain(get_args(annotation)[0])
        if isinstance(item, type) and issubclass(item, BaseModel):
            return "rows", item
        if get_origin(item) is Literal:
            return "days", get_args(item)
        return "words", None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "group", annotation
    simple: dict[Any, Kind] = {bool: "bool", int: "int", Decimal: "decimal", date: "date", time: "time"}
    if annotation in simple:
        return simple[annotation], None
    longest = max((m.max_length for m in info.metadata if isinstance(m, MaxLen)), default=0)
    return ("long" if longest > 64 else "text"), None


def _shown(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and len(value) == 8 and value[2] == ":" and value.endswith(":00"):
        return value[:5]  # a time as JSON: the form's time input shows hours and minutes
    return value


def _default(info: FieldInfo) -> Any:
    if info.default is PydanticUndefined or info.default is None or isinstance(info.default, BaseModel):
        return None
    return _shown(info.default)


def form_fields(
    model: type[BaseModel], values: dict[str, Any], path: str, keys: tuple[str, ...] | None = None
) -> list[FieldOut]:
    """The form for ``model`` filled in with ``values`` (what the program gives), labelled for ``path``."""
    out = []
    for key, info in model.model_fields.items():
        if keys is not None and key not in keys:
            continue
        where = f"{path}.{key}" if path else key
        kind, extra = _kind(info)
        value = values.get(key)
        field = FieldOut(
            key=key,
            label=label_for(_label_path(where), key),
            hint=_(HINTS[_label_path(where)]) if _label_path(where) in HINTS else None,
            kind=kind,
            value=_shown(value) if kind not in ("group", "rows", "days", "words") else None,
            default=_default(info),
            required=info.is_required(),
        )
        if kind in ("choice", "days"):
            field.options = [OptionOut(value=o, label=_(OPTIONS[o]) if o in OPTIONS else o) for o in extra]
            if kind == "days":
                field.value = value or []
        elif kind == "words":
            field.value = ", ".join(value or [])
        elif kind == "group":
            field.fields = form_fields(extra, value or {}, where)
        elif kind == "rows":
            field.fields = form_fields(extra, {}, where)
            field.rows = [form_fields(extra, row, where) for row in value or []]
        out.append(field)
    return out


def _label_path(where: str) -> str:
    """``rewards.0.title`` and ``rewards.title`` are labelled alike."""
    return ".".join(part for part in where.split(".") if not part.isdigit())


class SectionOut(Model):
    key: str
    title: str
    icon: str
    summary: str
    shape: Literal["object", "list"] = Field(description="list: the section is a list of rows (rewards...)")
    hint: str | None = None
    fields: list[FieldOut] = Field(default_factory=list)


def _model_of(section: str) -> tuple[type[BaseModel], Literal["object", "list"]]:
    if section == GENERAL:
        return Program, "object"
    kind, extra = _kind(Program.model_fields[section])
    return extra, ("list" if kind == "rows" else "object")


def section_form(program: Program, section: str) -> SectionOut:
    data = program_data(program)
    model, shape = _model_of(section)
    value = editor.section_value(data, section)
    if section == GENERAL:
        fields = form_fields(Program, value, "", GENERAL_KEYS)
    elif shape == "list":
        fields = form_fields(Program, {section: value or []}, "", (section,))
        fields[0].label = ""  # the section's title says it
    else:
        fields = form_fields(model, value or {}, section)
    hint = _(HINTS[section]) if section in HINTS else None
    return SectionOut(**_heading(program, section), shape=shape, hint=hint, fields=fields)


def _heading(program: Program, section: str) -> dict[str, str]:
    return {
        "key": section,
        "title": section_title(section),
        "icon": SECTION_ICONS.get(section, "•"),
        "summary": summary(program, section),
    }


def summary(program: Program, section: str) -> str:
    """One line on what a section says now."""
    count: int
    if section == GENERAL:
        return f"{program.name} · {program.currency} · {program.timezone}"
    if section == "earn":
        return _("{points} per 1 {currency}, rounded {rounding}").format(
            points=program.earn.points_per_unit.normalize(),
            currency=program.currency,
            rounding=_(OPTIONS[program.earn.rounding]).lower(),
        )
    if section == "welcome":
        count = program.welcome.bonus
        return ngettext("{points} point", "{points} points", count).format(points=count)
    if section == "expiry":
        return _(OPTIONS[program.expiry.policy])
    if section == "rewards":
        count = len(program.rewards)
        return ngettext("{count} reward", "{count} rewards", count).format(count=count)
    if section == "promotions":
        count = len(program.promotions)
        return ngettext("{count} promotion", "{count} promotions", count).format(count=count)
    if section == "punch_cards":
        count = len(program.punch_cards)
        return ngettext("{count} punch card", "{count} punch cards", count).format(count=count)
    if section == "stores":
        count = len(program.stores)
        if not count:
            return _("One shop (no stores listed)")
        return ngettext("{count} store", "{count} stores", count).format(count=count)
    if section == "tiers":
        count = len(program.tiers.levels)
        return ngettext("{count} level", "{count} levels", count).format(count=count)
    if section == "missions":
        count = len(program.missions)
        return ngettext("{count} mission", "{count} missions", count).format(count=count)
    if section == "vip":
        offer = program.vip_offer
        return (
            _("Offered: {price} ⭐ per {days}-day period").format(price=offer.price_stars, days=offer.period_days)
            if offer
            else _("Off")
        )
    rules = getattr(program, section)
    if getattr(rules, "enabled", True) is False:
        return _("Off")
    count = len(program_data(program).get(section) or {})
    if not count:
        return _("As by default")
    return ngettext("{count} setting chosen", "{count} settings chosen", count).format(count=count)


# ------------------------------------------------------------------------------------------------ requests


def _admin(request: web.Request) -> None:
    """The program is the admins': each request checks it, whatever the page showed."""
    require(request, Permission.MANAGE_STAFF)
    require(request, Permission.MANAGE_REWARDS)


async def _in_force(services: WebServices) -> Revision:
    """The revision in force, read from the database: the editor starts from the newest, whatever this process
    has caught up with."""
    async with services.sessions() as session:
        revision = await current_revision(session)
    if revision is None:  # pragma: no cover - every process stores the first revision at its start
        raise Refused(409, "no_revision", _("The program has no revision yet: start the bot once."))
    return revision


def _section(name: str) -> str:
    if name not in SECTIONS:
        raise bad_input()
    return name


# pydantic's own messages (its English, word for word), so that a reader of Chinese is told the model's rule in
# Chinese; a message not among them (a rule of ours, or pydantic's wording changed) stays as the model says it.
PYDANTIC = {
    "greater_than": N_("Input should be greater than {gt}"),
    "greater_than_equal": N_("Input should be greater than or equal to {ge}"),
    "less_than": N_("Input should be less than {lt}"),
    "less_than_equal": N_("Input should be less than or equal to {le}"),
    "string_pattern_mismatch": N_("String should match pattern '{pattern}'"),
    "int_parsing": N_("Input should be a valid integer, unable to parse string as an integer"),
    "int_from_float": N_("Input should be a valid integer, got a number with a fractional part"),
    "int_type": N_("Input should be a valid integer"),
    "decimal_parsing": N_("Input should be a valid decimal"),
    "literal_error": N_("Input should be {expected}"),
    "missing": N_("Field required"),
    "bool_parsing": N_("Input should be a valid boolean, unable to interpret input"),
    "extra_forbidden": N_("unknown key"),
}


_COUNTED = {
    "string_too_short": ("String should have at least {min_length} character", "min_length"),
    "string_too_long": ("String should have at most {max_length} character", "max_length"),
}


def _counted(kind: str, count: int) -> str:
    if kind == "string_too_short":
        return ngettext(
            "String should have at least {min_length} character",
            "String should have at least {min_length} characters",
            count,
        )
    return ngettext(
        "String should have at most {max_length} character", "String should have at most {max_length} characters", count
    )


def problem_text(problem: str) -> str:
    """A problem in the reader's language when it is one of pydantic's usual ones, else as the model says it."""
    kind, context = getattr(problem, "kind", ""), getattr(problem, "context", {})
    try:
        if kind in _COUNTED:
            singular, key = _COUNTED[kind]
            count = int(context[key])
            english = singular if count == 1 else singular + "s"
            if english.format(**context) == problem:
                return _counted(kind, count).format(**context)
        elif (template := PYDANTIC.get(kind)) is not None and template.format(**context) == problem:
            return _(template).format(**context)
    except (KeyError, IndexError, ValueError):
        pass
    return str(problem)


def _problems_out(found: dict[str, editor.Problem]) -> dict[str, str]:
    return {where or "": problem_text(why) for where, why in found.items()}


def _invalid(found: dict[str, str], message: str | None = None) -> web.Response:
    where, why = next(iter(found.items()))
    text = message or _("Nothing was saved: {key}: {problem}").format(key=where or _("the program"), problem=why)
    return web.json_response({"error": {"code": "invalid", "message": text, "fields": found}}, status=400)


def _stale(stale: StaleRevision) -> web.Response:
    sections = ", ".join(section_title(GENERAL if key in GENERAL_KEYS else key) for key in stale.changed) or "—"
    text = _(
        "Not saved: someone saved revision {current} after you opened revision {based_on}. Changed since: "
        "{sections}. Open the section again to start from revision {current}."
    ).format(current=stale.current, based_on=stale.based_on, sections=sections)
    body = {"code": "stale", "message": text, "changed": stale.changed, "current": stale.current}
    return web.json_response({"error": body}, status=409)


def _unchanged(number: int) -> Refused:
    return Refused(409, "unchanged", _("Nothing to save: this says what revision {number} says.").format(number=number))


def _to_fix(count: int) -> str:
    return ngettext("{count} thing to fix in the form", "{count} things to fix in the form", count).format(count=count)


def _note(text: str | None) -> str | None:
    note = " ".join((text or "").split())
    if note and not note.isprintable():
        raise bad_input()
    return note or None


def _in_force_here(request: web.Request, saved: Revision) -> None:
    """This process takes the new revision at once; the others hear of it through Redis (or read it within
    seconds: ``bot.programs``)."""
    services = request.app[SERVICES]
    programs = services.programs
    if (programs.revision or 0) < saved.number:
        programs.current = saved.program
    if services.redis is not None:
        later(request, announce(services.redis, saved.number), "program announcement")


# ------------------------------------------------------------------------------------------------ screens


class ProgramOut(Model):
    revision: int
    sections: list[SectionOut] = Field(description="Each with its summary; the chosen one (?section=) with its form")
    section: SectionOut | None
    categories: list[str] = Field(description="For the preview's sample purchase")
    tiers: list[OptionOut]
    stores: list[OptionOut] = Field(default_factory=list, description="For the sample: where it is recorded")
    now: str = Field(description="The program's local time now, as the preview's default (YYYY-MM-DDTHH:MM)")


async def load_program(request: web.Request) -> ProgramOut:
    _admin(request)
    services = request.app[SERVICES]
    revision = await _in_force(services)
    program = revision.program
    chosen = request.query.get("section")
    section = section_form(program, _section(chosen)) if chosen else None
    local = services.clock().astimezone(program.tz)
    return ProgramOut(
        revision=revision.number,
        sections=[SectionOut(**_heading(program, s), shape=_model_of(s)[1]) for s in SECTIONS],
        section=section,
        categories=sorted(program.categories()),
        tiers=[OptionOut(value=level.name, label=level.name_in(request[LANGUAGE])) for level in program.tiers.levels],
        stores=[OptionOut(value=store.key, label=store.name_in(request[LANGUAGE])) for store in program.stores],
        now=local.strftime("%Y-%m-%dT%H:%M"),
    )


class RevisionOut(Model):
    number: int
    when: str
    who: str
    note: str | None
    restores: int | None
    changed: list[str] = Field(description="The sections that differ from the revision before, by title")
    current: bool


class HistoryOut(Model):
    revision: int
    revisions: list[RevisionOut]


async def load_history(request: web.Request) -> HistoryOut:
    _admin(request)
    services = request.app[SERVICES]
    tz, locale = services.program.tz, locale_of(request[LANGUAGE])
    names: dict[int, str] = {}
    async with services.sessions() as session:
        rows = await history(session, HISTORY + 1)
        for row in rows:
            if row.author_id is not None and row.author_id not in names:
                member = await get_by_telegram_id(session, row.author_id)
                names[row.author_id] = f"{member.first_name} ({row.author_id})" if member else str(row.author_id)
    out: list[RevisionOut] = []
    for row, before in zip(rows, [*rows[1:], None], strict=True):
        if len(out) == HISTORY:
            break
        changed = editor.changed_sections(json.loads(before.program), json.loads(row.program)) if before else []
        who = names[row.author_id] if row.author_id is not None else _author(row.author)
        out.append(
            RevisionOut(
                number=row.number,
                when=when(row.created_at, tz, locale),
                who=who,
                note=row.note,
                restores=row.restores,
                changed=[section_title(key) for key in changed],
                current=row is rows[0],
            )
        )
    return HistoryOut(revision=rows[0].number if rows else 0, revisions=out)


def _author(author: str) -> str:
    return {"file": _("the program file"), "cli": _("the command line")}.get(author, author)


class FileOut(Model):
    revision: int
    filename: str
    toml: str


async def load_file(request: web.Request) -> FileOut:
    _admin(request)
    revision = await _in_force(request.app[SERVICES])
    made = f"{revision.created_at:%Y-%m-%d %H:%M} UTC"
    text = f"# Program revision {revision.number} ({made}), from the console\n" + program_toml(revision.program)
    return FileOut(revision=revision.number, filename=f"program-{revision.number}.toml", toml=text)


# ------------------------------------------------------------------------------------------------ actions


class DraftIn(Model):
    section: str = Field(max_length=32)
    value: dict[str, Any] | list[Any] | None = Field(description="The section as the form gives it")


class CheckOut(Model):
    ok: bool
    fields: dict[str, str] = Field(description="Problems by place (earn.points_per_unit, rewards.0.cost; '' overall)")
    changed: bool = Field(description="Whether the draft says something other than the revision in force")
    message: str


def _draft(program: Program, body: DraftIn) -> dict[str, Any]:
    try:
        return editor.with_section(program, _section(body.section), body.value)
    except KeyError as exc:
        raise bad_input() from exc


async def check_draft(request: web.Request) -> web.Response:
    _admin(request)
    body = await read(request, DraftIn, MAX_EDIT)
    base = await _in_force(request.app[SERVICES])
    program, found = editor.check(_draft(base.program, body))
    changed = program is not None and not editor.same(program, base.program)
    message = _("Looks right.") if program is not None else _to_fix(len(found))
    return json_of(CheckOut(ok=program is not None, fields=_problems_out(found), changed=changed, message=message))


class SampleIn(Model):
    amount: Decimal = Field(gt=0, le=10**9, max_digits=16)
    category: str | None = Field(default=None, pattern=r"^[\w-]{1,32}$")
    items: int = Field(default=1, ge=1, le=999)
    tier: str | None = Field(default=None, max_length=32)
    vip: bool = False
    at: str | None = Field(default=None, description="Local date and time (YYYY-MM-DDTHH:MM); default: now")
    store: str | None = Field(default=None, pattern=r"^[a-z0-9_-]{1,32}$", description="A [[stores]] key")


class PreviewIn(DraftIn):
    sample: SampleIn


class EstimateOut(Model):
    revision: int | None
    points: int
    text: str


class PreviewOut(Model):
    now: EstimateOut
    draft: EstimateOut | None = Field(description="None while the draft has problems")
    message: str


def _explain(estimate: editor.Estimate, program: Program, language: str) -> str:
    earning = estimate.earning
    if earning.promotion:
        text = ngettext(
            "{total} point: {base} base {detail} {promotion}",
            "{total} points: {base} base {detail} {promotion}",
            earning.total,
        ).format(
            total=earning.total,
            base=earning.base,
            detail=earning.detail or "",
            promotion=program.promotion_name(earning.promotion, language),
        )
    else:
        text = ngettext("{points} point", "{points} points", earning.total).format(points=earning.total)
    if estimate.multiplier != 1:
        text += " · " + _("tier and VIP ×{multiplier}").format(multiplier=estimate.multiplier.normalize())
    return text


async def preview(request: web.Request) -> web.Response:
    _admin(request)
    services = request.app[SERVICES]
    body = await read(request, PreviewIn, MAX_EDIT)
    base = await _in_force(services)
    draft, found = editor.check(_draft(base.program, body))
    sample = _sample(body.sample, base.program, services.clock())
    language = request[LANGUAGE]
    async with services.sessions() as session:
        now = await editor.estimate(session, base.program, sample)
        after = await editor.estimate(session, draft, sample) if draft is not None else None
    if after is not None and draft is not None:
        shown = EstimateOut(revision=None, points=after.earning.total, text=_explain(after, draft, language))
        difference = after.earning.total - now.earning.total
        message = (
            _("The same as now.")
            if not difference
            else ngettext(
                "{points:+d} point with your changes.", "{points:+d} points with your changes.", abs(difference)
            ).format(points=difference)
        )
    else:
        shown, message = None, _to_fix(len(found))
    return json_of(
        PreviewOut(
            now=EstimateOut(revision=base.number, points=now.earning.total, text=_explain(now, base.program, language)),
            draft=shown,
            message=message,
        )
    )


def _sample(body: SampleIn, program: Program, now: datetime) -> Sample:
    at = now
    if body.at:
        try:
            at = datetime.strptime(body.at, "%Y-%m-%dT%H:%M").replace(tzinfo=program.tz).astimezone(UTC)
        except ValueError as exc:
            raise bad_input() from exc
    category = body.category.lower() if body.category else None
    return Sample(body.amount, at, category, body.items, body.tier or None, body.vip, body.store or None)


class SaveIn(DraftIn):
    based_on: int = Field(ge=1, description="The revision the form was opened from")
    note: str | None = Field(default=None, max_length=MAX_NOTE)


class SavedOut(Model):
    message: str
    revision: int


async def save(request: web.Request) -> web.Response:
    _admin(request)
    services = request.app[SERVICES]
    body = await read(request, SaveIn, MAX_EDIT)
    section = _section(body.section)
    async with services.sessions() as session:
        base = await get_revision(session, body.based_on)
        if base is None:
            raise bad_input()
        try:
            saved = await editor.save_section(
                session,
                base,
                section,
                body.value,
                author=FROM_TELEGRAM,
                author_id=request[VIEWER].telegram_id,
                now=services.clock(),
                note=_note(body.note),
            )
        except KeyError as exc:
            raise bad_input() from exc
        except editor.Invalid as invalid:
            return _invalid(_problems_out(invalid.problems))
        except StaleRevision as stale:
            return _stale(stale)
        except Unchanged:
            raise _unchanged(base.number) from None
    _in_force_here(request, saved)
    message = _("✅ Saved as revision {number}: every till and chat uses it within seconds. It is in the audit log.")
    return json_of(SavedOut(message=message.format(number=saved.number), revision=saved.number))


class ImportIn(Model):
    toml: str = Field(min_length=1, max_length=MAX_EDIT)
    based_on: int = Field(ge=1)
    note: str | None = Field(default=None, max_length=MAX_NOTE)


async def import_file(request: web.Request) -> web.Response:
    _admin(request)
    services = request.app[SERVICES]
    body = await read(request, ImportIn, MAX_EDIT)
    try:
        program = parse_program(body.toml, "TOML")
    except ProgramError as problem:
        message = _("Nothing was imported: {problem}").format(problem=problem)
        return web.json_response({"error": {"code": "invalid", "message": message}}, status=400)
    async with services.sessions() as session:
        base = await get_revision(session, body.based_on)
        if base is None:
            raise bad_input()
        if editor.same(program, base.program):
            raise _unchanged(base.number)
        try:
            saved = await save_revision(
                session,
                program,
                based_on=base.number,
                author=FROM_TELEGRAM,
                author_id=request[VIEWER].telegram_id,
                now=services.clock(),
                note=_note(body.note),
                audit=editor.IMPORT,
            )
        except StaleRevision as stale:
            return _stale(stale)
    _in_force_here(request, saved)
    message = _("✅ Imported as revision {number}: every till and chat uses it within seconds.")
    return json_of(SavedOut(message=message.format(number=saved.number), revision=saved.number))


class RollbackIn(Model):
    number: int = Field(ge=1, description="The revision to bring back")
    based_on: int = Field(ge=1)
    note: str | None = Field(default=None, max_length=MAX_NOTE)


async def roll_back(request: web.Request) -> web.Response:
    _admin(request)
    services = request.app[SERVICES]
    body = await read(request, RollbackIn)
    if body.number == body.based_on:
        raise Refused(409, "in_force", _("Revision {number} is the one in force already.").format(number=body.number))
    async with services.sessions() as session:
        try:
            saved = await rollback_to(
                session,
                body.number,
                based_on=body.based_on,
                author=FROM_TELEGRAM,
                author_id=request[VIEWER].telegram_id,
                now=services.clock(),
                note=_note(body.note),
                audit=editor.ROLLBACK,
            )
        except LookupError:
            raise Refused(404, "not_found", _("There is no revision {number}.").format(number=body.number)) from None
        except StaleRevision as stale:
            return _stale(stale)
        except ProgramError as problem:  # an old revision today's models refuse
            raise Refused(409, "unreadable", str(problem)) from problem
    _in_force_here(request, saved)
    message = _("✅ Revision {number} brings back revision {restored}.").format(
        number=saved.number, restored=body.number
    )
    return json_of(SavedOut(message=message, revision=saved.number))


SCREENS = [
    Screen(
        "console/program",
        load_program,
        "console_program.html",
        ProgramOut,
        "The program's sections (?section=), admins",
    ),
    Screen("console/program/history", load_history, "console_program_history.html", HistoryOut, "Program revisions"),
    Screen("console/program/file", load_file, "console_program_file.html", FileOut, "The program as a TOML file"),
]
ACTIONS = [
    Action("console/program/check", check_draft, DraftIn, CheckOut, "Check a section as the admin types"),
    Action("console/program/preview", preview, PreviewIn, PreviewOut, "A sample purchase now and under the draft"),
    Action("console/program/save", save, SaveIn, SavedOut, "Save a section as a new revision (409 if stale)"),
    Action("console/program/import", import_file, ImportIn, SavedOut, "A program file (TOML) as a new revision"),
    Action("console/program/rollback", roll_back, RollbackIn, SavedOut, "Make an old revision current again"),
]


def setup(app: web.Application, base: str) -> None:
    mount(app, base, SCREENS, ACTIONS)

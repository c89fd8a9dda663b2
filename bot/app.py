"""The composition root: wires settings, storage, the program and the routers into a Dispatcher and Bot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import aiogram.methods
from aiogram import Bot, Dispatcher, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.methods.base import Response, TelegramMethod
from aiogram.types import LinkPreviewOptions
from aiogram.utils.i18n import I18n

from bot.dedupe import DropRedelivered, SeenUpdates
from bot.metrics import UpdateMetrics, instrument_bot
from bot.middlewares import ReleaseBeforeSending, UpdateContext
from bot.session import JsonSession
from bot.settings import Settings
from handlers import (
    account,
    adjust,
    broadcast,
    campaign,
    card,
    errors,
    feedback,
    language,
    menu,
    nps,
    privacy,
    profile,
    purchase,
    referral,
    refund,
    rewards,
    sharing,
    start,
    stats,
    support,
    vip,
)
from handlers.broadcasting import Broadcaster
from handlers.commands import set_default_menus, set_staff_menus
from handlers.filters import PrivateChat
from handlers.ui import make_i18n
from loyalty.members import get_by_telegram_id
from loyalty.program import Program
from loyalty.roles import Role, StaticRoles, staff_in_database
from storage.clock import utcnow
from storage.database import SessionFactory

# aiogram parses every reply as ``Response[<method's result type>]``. pydantic keeps parametrised generics only
# weakly, so a garbage collection drops them and the next reply rebuilds the model: about 30 ms of CPU each
# time, which dominated the cost of a busy bot. Holding them here keeps one model per result type.
_RESPONSE_MODELS = [
    Response[method.__returning__]  # type: ignore[name-defined]
    for method in vars(aiogram.methods).values()
    if isinstance(method, type) and issubclass(method, TelegramMethod) and method is not TelegramMethod
]


def static_roles(settings: Settings) -> StaticRoles:
    return StaticRoles(admins=settings.admin_ids, cashiers=settings.cashier_ids, support=settings.support_ids)


def make_bot(settings: Settings, token: str | None = None) -> Bot:
    # Connections enough for a paid broadcast's sends in flight (aiohttp's default pool is 100).
    session = JsonSession(api=TelegramAPIServer.from_base(settings.telegram_api_url.rstrip("/")), limit=300)
    session.middleware(ReleaseBeforeSending())
    return instrument_bot(
        Bot(
            token=token or settings.bot_token or "",
            session=session,
            default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview=LinkPreviewOptions(is_disabled=True)),
        )
    )


def build_dispatcher(
    settings: Settings,
    program: Program,
    sessions: SessionFactory,
    *,
    clock: Callable[[], datetime] = utcnow,
    storage: BaseStorage | None = None,
    events_isolation: BaseEventIsolation | None = None,
    i18n: I18n | None = None,
    seen_updates: SeenUpdates | None = None,
) -> Dispatcher:
    i18n = i18n or make_i18n()
    dp = Dispatcher(storage=storage or MemoryStorage(), events_isolation=events_isolation)
    dp["settings"] = settings
    dp["program"] = program
    dp["sessions"] = sessions
    dp["clock"] = clock
    dp["i18n"] = i18n
    dp["desk"] = support.Desk(settings)
    dp["broadcaster"] = Broadcaster(sessions, program, i18n, settings, clock)
    # Metrics first: an update is counted, and its error seen, whatever the later middlewares do.
    dp.update.outer_middleware(UpdateMetrics())
    if seen_updates is not None:  # a redelivered update is skipped before it costs a database session
        dp.update.outer_middleware(DropRedelivered(seen_updates))
    dp.update.outer_middleware(UpdateContext(sessions, static_roles(settings), i18n, [account.read_ahead()]))
    # Balances, codes and staff commands are nobody else's business: in groups the bot answers none of them.
    private = Router(name="private")
    private.message.filter(PrivateChat())
    # A message visits the routers in order until one handles it. Account, start and menu never claim the same
    # message, so among them the order only sets the cost: the busiest, account (/balance), goes first.
    private.include_routers(
        account.router(),
        start.router(),
        menu.router(),
        card.router(),
        language.router(),
        purchase.router(),
        refund.router(),
        adjust.router(),
        rewards.router(),
        vip.router(),
        campaign.router(),
        referral.router(),
        sharing.router(),
        profile.router(),
        privacy.router(),
        feedback.router(),
        nps.router(),
        support.router(),
        broadcast.router(),
        stats.router(),
        # Answers to a pending question come after every feature, so commands and menu buttons still work; an
        # open feedback thread takes whatever else the member writes.
        profile.input_router(),
        sharing.input_router(),
        nps.input_router(),
        broadcast.input_router(),
        feedback.input_router(),
        menu.fallback_router(),
    )
    # The staff chat is a group: its answers and review buttons, and whether a member blocked the bot, come
    # outside the private router. Every router an update passes costs it a middleware chain and copies of its
    # data, so the errors router, which only ever sees errors, goes last.
    dp.include_routers(
        private,
        support.staff_chat_router(),
        referral.review_router(),
        sharing.review_router(),
        privacy.chat_member_router(),
        errors.router(),
    )
    return dp


async def set_command_menus(bot: Bot, i18n: I18n, settings: Settings, sessions: SessionFactory) -> None:
    """Everyone gets the members' menu; each staff member's private chat gets their role's."""
    roles = static_roles(settings)
    async with sessions() as session:
        staff: dict[int, Role] = roles.staff_ids() | await staff_in_database(session)
        languages = {}
        for telegram_id in staff:
            member = await get_by_telegram_id(session, telegram_id)
            languages[telegram_id] = member.language if member else None
    await set_default_menus(bot, i18n)
    await set_staff_menus(bot, i18n, {tid: (role, languages[tid]) for tid, role in staff.items()})

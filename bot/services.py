"""The composition root: one typed ``Services`` object (settings, program, sessions, bot, dispatcher, Redis,
clock), built once and handed to the dispatcher (as handler data), the HTTP server and the scheduler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiogram import Bot, Dispatcher, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.types import LinkPreviewOptions
from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.dedupe import DropRedelivered, SeenUpdates
from bot.metrics import UpdateMetrics, instrument_bot
from bot.middlewares import ReleaseBeforeSending, UpdateContext
from bot.programs import ProgramWatcher
from bot.session import JsonSession
from bot.settings import Settings
from handlers import (
    account,
    adjust,
    audit,
    broadcast,
    campaign,
    card,
    checkin,
    errors,
    feedback,
    ids,
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
    staffing,
    start,
    stats,
    support,
    vip,
)
from handlers.filters import PrivateChat
from handlers.staff import StaffChats
from loyalty.members import get_by_telegram_id
from loyalty.program import Program
from loyalty.revisions import ProgramRef
from loyalty.roles import StaticRoles, staff_roles
from notifications.broadcasting import Broadcaster
from notifications.menus import set_default_menus, set_menu_button, set_staff_menus
from notifications.texts import make_i18n
from storage.clock import utcnow
from storage.database import SessionFactory


@dataclass(kw_only=True, eq=False)
class Services:
    settings: Settings
    programs: ProgramRef  # the revision in force, swapped whole by ``watcher`` when another is saved
    sessions: SessionFactory
    bot: Bot
    i18n: I18n
    broadcaster: Broadcaster
    clock: Callable[[], datetime] = utcnow
    redis: Any | None = None  # redis.asyncio.Redis with LOYALTY_REDIS_URL: FSM state, isolation, readiness
    engine: AsyncEngine | None = None  # disposed of by close(); None when the caller owns it (tests)
    dispatcher: Dispatcher = field(init=False)
    watcher: ProgramWatcher | None = field(init=False, default=None)
    sets_menus: bool = field(init=False, default=False)  # this process set the menus: it keeps them current

    @property
    def program(self) -> Program:
        """The program in force now: read it when it is needed, never keep it (a new revision replaces it)."""
        return self.programs.current

    def watch_program(self, every: float | None = None) -> ProgramWatcher:
        """Follow new revisions from now on (``bot.programs``): through Redis when there is one, else by polling."""
        if self.watcher is None:
            self.watcher = ProgramWatcher(self.sessions, self.programs, self.redis, every, self._program_changed)
            self.watcher.start()
        return self.watcher

    async def _program_changed(self, was: Program, now: Program) -> None:
        # The menu button is the bot's, not a process's: the process that set it at start-up renames it.
        if self.sets_menus and was.name != now.name:
            await set_menu_button(self.bot, now.name, self.settings.webapp_url)

    @property
    def roles(self) -> StaticRoles:
        s = self.settings
        return StaticRoles(admins=s.admin_ids, cashiers=s.cashier_ids, support=s.support_ids)

    @property
    def support_chat_id(self) -> int | None:
        return self.settings.support_chat_id

    def handler_data(self) -> dict[str, Any]:
        """What handlers are given by parameter name (aiogram's workflow data); never settings themselves. The
        program is not among them: ``UpdateContext`` gives each update the one in force when it arrives."""
        return {
            "sessions": self.sessions,
            "clock": self.clock,
            "i18n": self.i18n,
            "broadcaster": self.broadcaster,
            "desk": support.Desk(self.settings.support_chat_id, self.roles),
            "staff_chats": StaffChats(self.settings.support_chat_id, self.settings.admin_ids),
            "card_photos": card.SentPhotos(),
            "static_roles": self.roles,  # roles from settings, for /staff and invitation links
            "webapp_url": self.settings.webapp_url,  # "Open app" buttons; None: chat only
        }

    async def close(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()
        await self.broadcaster.stop()
        await self.bot.session.close()
        await self.dispatcher.storage.close()
        await self.dispatcher.fsm.events_isolation.close()
        if self.engine is not None:
            await self.engine.dispose()


def compose(
    settings: Settings,
    program: Program | ProgramRef,
    sessions: SessionFactory,
    bot: Bot | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
    fsm: FSMContextMiddleware | None = None,
    seen_updates: SeenUpdates | None = None,
    redis: Any | None = None,
    engine: AsyncEngine | None = None,
    i18n: I18n | None = None,
) -> Services:
    """``program``: a program (this process's own from now on) or the holder of the one in force; ``fsm``: the FSM
    middleware in place of aiogram's in-memory one (``bot.gate.RedisGate`` on Redis, which also skips handled
    updates); ``seen_updates``: the record of handled updates without Redis (a webhook)."""
    i18n = i18n or make_i18n()
    programs = program if isinstance(program, ProgramRef) else ProgramRef(program)
    services = Services(
        settings=settings,
        programs=programs,
        sessions=sessions,
        bot=bot or make_bot(settings),
        i18n=i18n,
        broadcaster=Broadcaster(
            sessions, programs, i18n, clock, rate=settings.broadcast_rate, paid=settings.paid_broadcasts
        ),
        clock=clock,
        redis=redis,
        engine=engine,
    )
    services.dispatcher = build_dispatcher(services, fsm=fsm, seen_updates=seen_updates)
    return services


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
    services: Services,
    *,
    fsm: FSMContextMiddleware | None = None,
    seen_updates: SeenUpdates | None = None,
) -> Dispatcher:
    dp = Dispatcher(disable_fsm=fsm is not None)
    if fsm is not None:  # where aiogram's own would be: after its error and user-context layers, before ours
        dp.fsm = fsm
        dp.update.outer_middleware(fsm)
    dp.workflow_data.update(services.handler_data())
    # Metrics first: an update is counted, and its error seen, whatever the later middlewares do.
    dp.update.outer_middleware(UpdateMetrics())
    if seen_updates is not None:  # a redelivered update is skipped before it costs a database session
        dp.update.outer_middleware(DropRedelivered(seen_updates))
    dp.update.outer_middleware(UpdateContext(services.sessions, services.roles, services.i18n, services.programs))
    # Balances, codes and staff commands are nobody else's business: in groups the bot answers none of them.
    private = Router(name="private")
    private.message.filter(PrivateChat())
    # A message visits the routers in order until one handles it. Account, start and menu never claim the same
    # message, so among them the order only sets the cost: the busiest, account (/balance), goes first.
    private.include_routers(
        account.router(),
        staffing.router(),  # an invitation link (/start staff_…) before start, which would join the program
        start.router(),
        menu.router(),
        card.router(),
        ids.router(),
        language.router(),
        purchase.router(),
        refund.router(),
        adjust.router(),
        audit.router(),
        rewards.router(),
        checkin.router(),
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
        support.input_router(),
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
        ids.router(),  # /id in groups, for LOYALTY_SUPPORT_CHAT_ID (private chats have their own, above)
        referral.review_router(),
        sharing.review_router(),
        privacy.chat_member_router(),
        menu.stale_buttons_router(),
        errors.router(),
    )
    return dp


async def set_command_menus(services: Services) -> None:
    """Everyone gets the members' menu; each staff member's private chat gets their role's."""
    async with services.sessions() as session:
        staff = await staff_roles(session, services.roles)
        languages = {}
        for telegram_id in staff:
            member = await get_by_telegram_id(session, telegram_id)
            languages[telegram_id] = member.language if member else None
    await set_default_menus(services.bot, services.i18n)
    await set_menu_button(services.bot, services.program.name, services.settings.webapp_url)
    services.sets_menus = True
    await set_staff_menus(services.bot, services.i18n, {tid: (role, languages[tid]) for tid, role in staff.items()})

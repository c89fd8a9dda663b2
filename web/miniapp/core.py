"""The Mini App's plumbing: the page, its assets, authentication of every request, and one way to answer.

Each screen is one loader that returns a pydantic model. ``GET <base>api/<screen>`` answers it as JSON (the
documented API, and what benchmarks measure); ``GET <base>view/<screen>`` renders the same model with the screen's
template, in the viewer's language, for the page to show. Actions are ``POST <base>api/<action>`` with a JSON body
and answer JSON with a ``message`` already in the viewer's language.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiohttp import web
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, ValidationError

from loyalty.members import map_language
from loyalty.roles import Permission, StaticRoles, can
from notifications.texts import locale_of, speaking
from web.miniapp.auth import NotAuthenticated, Viewer, verified, viewer_of
from web.services import SERVICES, WebServices

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TELEGRAM_SCRIPT = "https://telegram.org/js/telegram-web-app.js"
MAX_BODY = 8 * 1024
# Telegram's clients show the app in a frame (web.telegram.org) or a webview; nothing else may frame it.
FRAME_ANCESTORS = "https://web.telegram.org https://*.telegram.org"

M = TypeVar("M", bound=BaseModel)
BACKGROUND: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("miniapp_background")
VIEWER = web.RequestKey("viewer", Viewer)
LANGUAGE = web.RequestKey("language", str)


@dataclass(frozen=True)
class AppConfig:
    """Where the app lives and which ``Telegram.WebApp`` script its page loads (the demo's own stand-in)."""

    base: str = "/app/"
    telegram_script: str = TELEGRAM_SCRIPT
    max_age: timedelta = timedelta(hours=24)


CONFIG: web.AppKey[AppConfig] = web.AppKey("miniapp")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Refused(Exception):
    """An answer the viewer reads: a bad input or a rule said no. ``message`` is already translated."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def bad_input() -> Refused:
    return Refused(400, "invalid", _("Something in the form is not right. Please check it and try again."))


def refused(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


# ------------------------------------------------------------------------------------------------ templates


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False}
    return env


ENV = _environment()


def translator(i18n: I18n) -> dict[str, Callable[..., Markup]]:
    """``_`` and ``ngettext`` for templates: the chat's catalogs and ``{name}`` placeholders, arguments escaped."""

    def gettext(msgid: str, **values: Any) -> Markup:
        return Markup(i18n.gettext(msgid)).format(**values)

    def ngettext(singular: str, plural: str, n: int, **values: Any) -> Markup:
        return Markup(i18n.gettext(singular, plural, n)).format(**values)

    return {"_": gettext, "ngettext": ngettext}


def render(request: web.Request, template: str, **context: Any) -> str:
    services = request.app[SERVICES]
    viewer = request[VIEWER]
    page = ENV.get_template(template)
    return page.render(
        **translator(services.i18n),
        viewer=viewer,
        role=viewer.role,
        can=lambda permission: can(viewer.role, Permission(permission)),
        staff=can(viewer.role, Permission.RECORD_PURCHASE),
        locale=locale_of(request[LANGUAGE]),
        program=services.program,
        new_key=lambda: secrets.token_urlsafe(12),
        **context,
    )


# ------------------------------------------------------------------------------------------------ requests


def language_of(viewer: Viewer) -> str:
    return viewer.member.language if viewer.member is not None else map_language(viewer.language_code)


def static_roles(services: WebServices) -> StaticRoles:
    settings = services.settings
    return StaticRoles(admins=settings.admin_ids, cashiers=settings.cashier_ids, support=settings.support_ids)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def authenticated(handler: Handler) -> Handler:
    """Check initData, find the viewer, and answer in their language; 401 shows nothing of the program."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        config = request.app[CONFIG]
        try:
            data = verified(services.bot.token, request.headers.get("Authorization"), services.clock(), config.max_age)
        except NotAuthenticated:
            return _unauthenticated(request)
        async with services.sessions() as session:
            viewer = await viewer_of(session, static_roles(services), data)
        return await as_viewer(request, viewer, handler)

    return wrapped


async def as_viewer(request: web.Request, viewer: Viewer, handler: Handler) -> web.StreamResponse:
    """Answer ``request`` for ``viewer``, in their language; a refusal becomes its JSON answer."""
    request[VIEWER] = viewer
    request[LANGUAGE] = language_of(viewer)
    with speaking(request.app[SERVICES].i18n, request[LANGUAGE]):
        try:
            return await handler(request)
        except Refused as no:
            return refused(no.status, no.code, no.message)


def _unauthenticated(request: web.Request) -> web.Response:
    if "/view/" in request.path:
        # We cannot know the reader's language: the same line in all three.
        return web.Response(
            status=401,
            content_type="text/html",
            text=ENV.get_template("unauthenticated.html").render(),
            headers={"WWW-Authenticate": "tma"},
        )
    return web.json_response(
        {"error": {"code": "unauthorized", "message": "open the app from the bot in Telegram"}},
        status=401,
        headers={"WWW-Authenticate": "tma"},
    )


async def read(request: web.Request, model: type[M], limit: int = MAX_BODY) -> M:
    """The body as ``model``; anything else is a 400 the viewer can read."""
    body = b""
    while len(body) <= limit and (chunk := await request.content.read(limit + 1 - len(body))):
        body += chunk  # a large body comes in several chunks
    if len(body) > limit:
        raise Refused(413, "too_large", _("That is too much to send at once."))
    try:
        data = json.loads(body or b"{}")
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return model.model_validate(data)
    except (ValueError, ValidationError, RecursionError) as exc:
        raise bad_input() from exc


def require(request: web.Request, permission: Permission | None = None, *, member: bool = False) -> None:
    """Roles are checked on the server for every request, whatever the page showed."""
    viewer = request[VIEWER]
    if permission is not None and not can(viewer.role, permission):
        raise Refused(403, "forbidden", _("This is only for the shop's staff."))
    if member and viewer.member is None:
        raise Refused(403, "not_a_member", _("Please join first: send /start to the bot."))


def later(request: web.Request, work: Coroutine[Any, Any, Any], what: str) -> None:
    """Work the answer need not wait for (telling the member in Telegram, a network round trip): kept until done,
    its failure only logged (what it tells of is recorded), and waited for when the server stops."""

    async def run() -> None:
        try:
            await work
        except Exception:
            log.warning("the Mini App's %s failed", what, exc_info=True)

    tasks = request.app[BACKGROUND]
    task = asyncio.create_task(run())
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def finish_background(app: web.Application) -> None:
    if tasks := app[BACKGROUND]:
        await asyncio.wait(tasks, timeout=10)


# ------------------------------------------------------------------------------------------------ routes

Loader = Callable[[web.Request], Awaitable[BaseModel]]


@dataclass(frozen=True)
class Screen:
    name: str
    load: Loader
    template: str
    out: type[BaseModel]
    summary: str


def json_of(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


async def _view(request: web.Request, screen: Screen) -> web.Response:
    model = await screen.load(request)
    return web.Response(
        text=render(request, screen.template, screen=screen.name, data=model),
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


def add_screen(app: web.Application, base: str, screen: Screen) -> None:
    async def as_json(request: web.Request) -> web.StreamResponse:
        return json_of(await screen.load(request))

    async def as_view(request: web.Request) -> web.StreamResponse:
        return await _view(request, screen)

    app.router.add_get(f"{base}api/{screen.name}", authenticated(as_json))
    app.router.add_get(f"{base}view/{screen.name}", authenticated(as_view))


def add_start(app: web.Application, base: str, pick: Callable[[Viewer], Screen]) -> None:
    """The first screen: the one that suits the viewer's role (a cashier's till, a member's home)."""

    async def start(request: web.Request) -> web.StreamResponse:
        return await _view(request, pick(request[VIEWER]))

    app.router.add_get(f"{base}view/start", authenticated(start))


@dataclass(frozen=True)
class Action:
    """``POST <base>api/<name>``: a JSON body (``body``) in, a JSON answer (``out``) with a ``message`` back."""

    name: str
    handle: Handler
    body: type[BaseModel]
    out: type[BaseModel]
    summary: str


def add_action(app: web.Application, base: str, action: Action) -> None:
    app.router.add_post(f"{base}api/{action.name}", authenticated(action.handle))


def mount(app: web.Application, base: str, screens: list[Screen], actions: list[Action]) -> None:
    for screen in screens:
        add_screen(app, base, screen)
    for action in actions:
        add_action(app, base, action)


def page_headers(config: AppConfig) -> dict[str, str]:
    script_origin = config.telegram_script if config.telegram_script.startswith("http") else ""
    policy = "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' {script_origin}".strip(),
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "object-src 'none'",
            f"frame-ancestors 'self' {FRAME_ANCESTORS}",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }

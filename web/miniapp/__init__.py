"""The Telegram Mini App: the member's card and account, the cashier's till and the admins' console, served beside
the purchases API.

``setup`` mounts it at ``AppConfig.base``: the page (``<base>``), its assets (``<base>static/``), the screens
(``<base>view/…``, HTML) and the JSON API (``<base>api/…``, in the OpenAPI document)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from loyalty.roles import Permission, can
from web.miniapp import broadcasts, checkin, console, dashboard, editor, member, till
from web.miniapp.auth import Viewer
from web.miniapp.core import (
    BACKGROUND,
    CONFIG,
    ENV,
    HERE,
    AppConfig,
    Screen,
    add_start,
    finish_background,
    page_headers,
)

STATIC = HERE / "static"
# Each screen module: its SCREENS and ACTIONS, and setup() to mount them (and anything else it serves).
FEATURES = (member, checkin, till, console, dashboard, editor, broadcasts)


def setup(app: web.Application, config: AppConfig) -> None:
    app[CONFIG] = config
    app[BACKGROUND] = set()
    app.on_shutdown.append(finish_background)
    base = config.base
    shell = ENV.get_template("index.html").render(base=base, telegram_script=config.telegram_script)
    headers = page_headers(config)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=shell, content_type="text/html", headers=headers)

    app.router.add_get(base, page)
    if base != "/":

        async def to_base(request: web.Request) -> web.Response:
            raise web.HTTPPermanentRedirect(base)

        app.router.add_get(base.rstrip("/"), to_base)
    app.router.add_static(f"{base}static/", STATIC, append_version=False)
    for feature in FEATURES:
        feature.setup(app, base)
    add_start(app, base, first_screen)


def first_screen(viewer: Viewer) -> Screen:
    if can(viewer.role, Permission.MANAGE_STAFF) and can(viewer.role, Permission.VIEW_REPORTS):
        return dashboard.SCREENS[0]  # an admin opens on the program's figures
    if can(viewer.role, Permission.RECORD_PURCHASE) or (
        viewer.member is None and can(viewer.role, Permission.REDEEM_COUPON)
    ):
        return till.SCREENS[0]
    return member.SCREENS[0]


def openapi_paths(base: str) -> tuple[dict[str, Any], list[type[BaseModel]]]:
    """The app's JSON endpoints for the OpenAPI document: each screen's ``GET`` and each action's ``POST``."""
    auth: list[dict[str, list[str]]] = [{"telegramInitData": []}]
    errors = {
        str(status): {"description": text, "content": {"application/json": {"schema": _ref("ErrorOut")}}}
        for status, text in ((400, "Bad input"), (401, "No valid initData"), (403, "Not allowed for this role"))
    }
    paths: dict[str, Any] = {}
    models: list[type[BaseModel]] = []
    for screen in [screen for feature in FEATURES for screen in feature.SCREENS]:
        models.append(screen.out)
        paths[f"{base}api/{screen.name}"] = {
            "get": {
                "operationId": "app_" + screen.name.replace("/", "_"),
                "summary": screen.summary,
                "tags": ["Mini App"],
                "security": auth,
                "responses": {"200": _content(screen.out.__name__), **errors},
            }
        }
    for action in [action for feature in FEATURES for action in feature.ACTIONS]:
        models += [action.body, action.out]
        paths[f"{base}api/{action.name}"] = {
            "post": {
                "operationId": "app_" + action.name.replace("/", "_"),
                "summary": action.summary,
                "tags": ["Mini App"],
                "security": auth,
                "requestBody": {"required": True, **_content(action.body.__name__)},
                "responses": {"200": _content(action.out.__name__), **errors},
            }
        }
    return paths, models


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(name: str) -> dict[str, Any]:
    return {"description": "OK", "content": {"application/json": {"schema": _ref(name)}}}

"""The HTTP server every role runs: health, readiness, Prometheus metrics, and (bot roles) Telegram's webhook
and the purchases API."""

from __future__ import annotations

import asyncio
import hmac
import logging
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from aiogram import Bot
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, generate_latest

from loyalty.broadcasts import queued
from storage.database import SessionFactory, ping
from web import miniapp
from web.api import setup_api
from web.miniapp.core import TELEGRAM_SCRIPT, AppConfig
from web.services import SERVICES, WebServices, WebSettings

log = logging.getLogger(__name__)

# Telegram's updates are small; anything near this is not from Telegram. The API has its own, smaller limit.
MAX_REQUEST = 1024 * 1024
# A readiness probe must answer quickly even when a dependency hangs.
READY_TIMEOUT = 2.0

BROADCAST_QUEUE = Gauge("loyalty_broadcast_queue_depth", "Broadcast deliveries waiting to be sent")
IN_FLIGHT = Gauge("loyalty_updates_in_flight", "Webhook updates this worker is handling")
REFUSED = Counter("loyalty_webhook_refused_total", "Webhook updates refused with 503: the worker was at its cap")
# Telegram ignores it; a load balancer or another sender may not.
RETRY_AFTER = {"Retry-After": "1"}


class WebhookHandler(SimpleRequestHandler):
    """aiogram's webhook handler with a cap on updates in flight and a secret check that cannot fail:
    ``compare_digest`` raises on a header with non-ASCII characters, which made a 500 (and Telegram's redelivery)
    out of a plain wrong secret.

    Beyond the cap an update is refused before it costs anything (not even reading it): past capacity, updates
    held in the worker only made every one of them late, for tens of seconds, until Telegram gave up on them.
    Refused, it is delivered again later and handled then, once."""

    def __init__(self, *args: Any, max_in_flight: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def handle(self, request: web.Request) -> web.Response:
        if self.in_flight >= self.max_in_flight:
            REFUSED.inc()
            return web.Response(status=503, text="busy, deliver again later", headers=RETRY_AFTER)
        self.in_flight += 1
        IN_FLIGHT.inc()
        try:
            return await super().handle(request)
        finally:
            self.in_flight -= 1
            IN_FLIGHT.dec()

    def verify_secret(self, telegram_secret_token: str, bot: Bot) -> bool:
        if not self.secret_token:
            return True
        given = telegram_secret_token.encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, self.secret_token.encode())


def webhook_path(settings: WebSettings) -> str | None:
    """The webhook is served at the path of LOYALTY_WEBHOOK_URL (a proxy may sit in front)."""
    if not settings.webhook_url:
        return None
    return urlsplit(settings.webhook_url).path or "/"


async def refresh_broadcast_queue(sessions: SessionFactory) -> None:
    """The queue depth is read at scrape time, so the gauge is never stale."""
    async with sessions() as session:
        BROADCAST_QUEUE.set(await queued(session))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await probe()
    except Exception as exc:  # any failure means not ready; the reason goes to the log, not the internet
        log.warning("readiness: %s does not answer: %s", name, exc)
        return name, "unavailable"
    return name, "ok"


async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]

    probes: list[tuple[str, Any]] = [("database", partial(ping, services.sessions))]
    if services.redis is not None:
        probes.append(("redis", services.redis.ping))
    checks = dict(await asyncio.gather(*(_check(name, probe) for name, probe in probes)))
    ready = all(state == "ok" for state in checks.values())
    return web.json_response(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


async def metrics(request: web.Request) -> web.Response:
    try:
        await refresh_broadcast_queue(request.app[SERVICES].sessions)
    except Exception:  # the other metrics are still worth serving when the database is down
        log.warning("metrics: could not read the broadcast queue", exc_info=True)
    body = generate_latest(REGISTRY)
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


def webapp_config(settings: WebSettings, telegram_script: str | None = None) -> AppConfig | None:
    """Where the Mini App is served: the path of LOYALTY_WEBAPP_URL; None without one (chat only)."""
    if not settings.webapp_url:
        return None
    path = urlsplit(settings.webapp_url).path or "/"
    return AppConfig(
        base=path if path.endswith("/") else path + "/",
        telegram_script=telegram_script or TELEGRAM_SCRIPT,
        max_age=timedelta(seconds=settings.webapp_auth_max_age),
    )


def make_http_app(services: WebServices, *, serve_updates: bool, telegram_script: str | None = None) -> web.Application:
    """``serve_updates``: this process answers Telegram (the bot roles), so it serves the webhook, the API and the
    Mini App. ``telegram_script``: the demo's stand-in for Telegram's ``telegram-web-app.js``."""
    app = web.Application(client_max_size=MAX_REQUEST)
    app[SERVICES] = services
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    if serve_updates:
        setup_api(app)
        config = webapp_config(services.settings, telegram_script)
        if config is not None:
            miniapp.setup(app, config)
        path = webhook_path(services.settings)
        if path is not None:
            # handle_in_background=False: Telegram hears 200 only once the update is handled, so an update a
            # dying worker was handling is redelivered rather than lost.
            WebhookHandler(
                services.dispatcher,
                services.bot,
                handle_in_background=False,
                secret_token=services.settings.webhook_secret,
                max_in_flight=services.settings.max_updates_in_flight,
            ).register(app, path=path)
    return app


async def start_http(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("HTTP server on %s", ", ".join(f"{h}:{p}" for h, p, *_ in runner.addresses))
    return runner

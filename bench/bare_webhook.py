"""A bare aiogram webhook worker, for comparison with ours: stock aiogram with its own RedisStorage and Redis event
isolation, a router with one handler that replies "ok", aiogram's SimpleRequestHandler answering once the update is
handled. Configured by the same LOYALTY_* variables as ``loyalty run --role bot`` (token, Bot API URL, Redis,
webhook path and secret, HTTP port), so ``bench.load`` starts either the same way."""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.types import Message
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web


def dispatcher() -> Dispatcher:
    router = Router()

    @router.message()
    async def reply(message: Message) -> None:
        await message.answer("ok")

    storage = RedisStorage.from_url(os.environ["LOYALTY_REDIS_URL"])
    dp = Dispatcher(storage=storage, events_isolation=storage.create_isolation())
    dp.include_router(router)
    return dp


async def main() -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(os.environ["LOYALTY_TELEGRAM_API_URL"]))
    bot = Bot(os.environ["LOYALTY_BOT_TOKEN"], session=session)
    app = web.Application()

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/readyz", ready)
    SimpleRequestHandler(
        dispatcher(), bot, handle_in_background=False, secret_token=os.environ["LOYALTY_WEBHOOK_SECRET"]
    ).register(app, path=urlsplit(os.environ["LOYALTY_WEBHOOK_URL"]).path)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, os.environ["LOYALTY_HTTP_HOST"], int(os.environ["LOYALTY_HTTP_PORT"])).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())

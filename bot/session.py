"""The Bot API client session: requests without files go as one JSON body."""

from __future__ import annotations

import json
from typing import Any, cast

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import InputFile
from aiohttp import ClientError, ClientTimeout

_JSON = {"Content-Type": "application/json"}


class JsonSession(AiohttpSession):
    """aiogram posts every request as a form, and aiohttp's form encoder percent-quotes the values in Python,
    byte by byte: for a reply of a few hundred characters (an emoji or a Chinese character is 3–4 bytes) the
    quoting cost more than the rest of sending it. The Bot API takes ``application/json`` too, which the C
    encoder writes at once. Requests that upload files still go as multipart forms."""

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None,  # noqa: ASYNC109 (aiogram's signature)
    ) -> TelegramType:
        body = self.build_json(bot, method)
        if body is None:
            return await super().make_request(bot, method, timeout)
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
        try:
            async with session.post(url, data=body, headers=_JSON,
                                    timeout=ClientTimeout(total=self.timeout if timeout is None else timeout)) as resp:
                raw_result = await resp.text()
        except TimeoutError as exc:
            raise TelegramNetworkError(method=method, message="Request timeout error") from exc
        except ClientError as exc:
            raise TelegramNetworkError(method=method, message=f"{type(exc).__name__}: {exc}") from exc
        response = self.check_response(bot=bot, method=method, status_code=resp.status, content=raw_result)
        return cast(TelegramType, response.result)

    def build_json(self, bot: Bot, method: TelegramMethod[Any]) -> bytes | None:
        """The request as JSON, or None when it uploads a file and must go as a form."""
        files: dict[str, InputFile] = {}
        params = {}
        for key, value in method.model_dump(warnings=False).items():
            prepared = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if prepared is not None:
                params[key] = prepared
        if files:
            return None
        return json.dumps(params, ensure_ascii=False).encode()

"""The Bot API client session: requests without files go as one JSON body."""

from __future__ import annotations

import inspect
import json
from functools import cache
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response
from aiogram.types import InputFile
from aiohttp import BytesPayload, FormData

from storage.fallbacks import AIOGRAM_JSON, library, took_fallback

# aiogram parses every reply as ``Response[<method's result type>]``. pydantic keeps parametrised generics only
# weakly, so a garbage collection drops them and the next reply rebuilds the model: about 30 ms of CPU each
# time, which dominated the cost of a busy bot. Each one is held here from its first reply on. (Building all of
# them at start-up, for the methods the bot never calls, cost about 25 MB: each holds the types it can return.)
_RESPONSE_MODELS: dict[Any, type[Response[Any]]] = {}


def response_model(returning: Any) -> type[Response[Any]]:
    """``Response[returning]``, the model a reply of that result type is parsed with, held from its first use on."""
    model = _RESPONSE_MODELS.get(returning)
    if model is None:
        model = _RESPONSE_MODELS[returning] = Response[returning]  # type: ignore[valid-type]
    return model


@cache
def keeps_values(session_class: type[AiohttpSession]) -> bool:
    """Whether ``prepare_value`` takes ``_dumps_json``, a private parameter of aiogram's: with False it leaves
    objects and lists as they are, where by default it turns each into a JSON string of its own (a form field)."""
    parameter = inspect.signature(session_class.prepare_value).parameters.get("_dumps_json")
    return parameter is not None and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)


class JsonSession(AiohttpSession):
    """aiogram posts every request as a form, and aiohttp's form encoder percent-quotes the values in Python,
    byte by byte: for a reply of a few hundred characters (an emoji or a Chinese character is 3–4 bytes) the
    quoting cost more than the rest of sending it. The Bot API takes ``application/json`` too, which the C
    encoder writes at once. Requests that upload files still go as multipart forms, and so does every request if
    aiogram's ``prepare_value`` no longer takes ``_dumps_json`` (``keeps_values``): aiogram's own way, slower."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.json_bodies = keeps_values(type(self))

    def check_response(self, bot: Bot, method: TelegramMethod[Any], status_code: int, content: str) -> Response[Any]:
        response_model(method.__returning__)  # aiogram's own ``Response[...]`` then finds it in pydantic's cache
        return super().check_response(bot, method, status_code, content)

    def build_form_data(self, bot: Bot, method: TelegramMethod[Any]) -> FormData:
        body = self.build_json(bot, method)
        if body is None:
            return super().build_form_data(bot, method)
        # aiogram posts whatever this returns as the request's data; a payload carries its own content type.
        return BytesPayload(body, content_type="application/json")  # type: ignore[return-value]

    def build_json(self, bot: Bot, method: TelegramMethod[Any]) -> bytes | None:
        """The request as JSON, or None when it must go as a form: it uploads a file, or aiogram changed."""
        if not self.json_bodies:
            took_fallback(AIOGRAM_JSON, f"{library('aiogram')}: prepare_value takes no _dumps_json")
            return None
        files: dict[str, InputFile] = {}
        params = {}
        for key, value in method.model_dump(warnings=False).items():
            prepared = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if prepared is not None:
                params[key] = prepared
        if files:
            return None
        return json.dumps(params, ensure_ascii=False).encode()

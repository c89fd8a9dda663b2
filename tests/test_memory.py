"""Issue 17, memory: aiogram's models built on first use (``bot.lazymodels``), ``Response[...]`` models kept from
their first reply on (``bot.session``), Alembic in a child process at start-up (``storage.migrate``).

``bot.lazymodels`` leans on pydantic internals: the tests named ``..._still_...`` fail when a release removed or
changed them; then read that module, and adapt it or leave its fallback (tested here) to do the work.
"""

from __future__ import annotations

import gc
import inspect
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from aiogram.methods.base import Response
from aiogram.types import Message, User
from pydantic import BaseModel

import bot.session
from bot.lazymodels import hook_problem
from bot.runner import StartupError, prepare_database
from bot.services import make_bot
from bot.session import response_model
from bot.settings import Settings
from emulator import FakeTelegram
from storage import migrate
from storage.migrate import MigrationFailed, current_and_head_in_child, upgrade_in_child

ROOT = Path(__file__).resolve().parent.parent


def _fresh(*code: str) -> dict[str, Any]:
    """Run the code (its parts dedented, one after the other) in a fresh interpreter, where nothing is imported yet,
    and return what it printed last, as JSON, with its standard error under ``stderr``."""
    done = subprocess.run(
        [sys.executable, "-c", "\n".join(textwrap.dedent(part) for part in code)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    result["stderr"] = done.stderr
    return result


UPDATES = """
USER = {"id": 501, "is_bot": False, "first_name": "Ann", "language_code": "zh-hans"}
CHAT = {"id": 501, "type": "private", "first_name": "Ann"}
KEYBOARD = {"inline_keyboard": [[{"text": "页 2 ›", "callback_data": "hist:2"}]]}
MESSAGE = {
    "message_id": 7, "date": 1764600000, "chat": CHAT, "from": USER, "text": "⭐ 50 积分",
    "entities": [{"type": "bold", "offset": 2, "length": 2}], "reply_markup": KEYBOARD,
    "reply_to_message": {"message_id": 6, "date": 1764600000, "chat": CHAT, "from": USER, "text": "/balance"},
    "photo": [{"file_id": "f", "file_unique_id": "u", "width": 90, "height": 90}],
}
MESSAGE_UPDATE = {"update_id": 1, "message": MESSAGE}
CALLBACK_UPDATE = {
    "update_id": 2,
    "callback_query": {"id": "9", "from": USER, "chat_instance": "c", "data": "hist:2", "message": MESSAGE},
}
"""


def test_pydantic_still_takes_types_namespace_and_a_parent_namespace() -> None:
    assert hook_problem() is None
    parameter = inspect.signature(BaseModel.model_rebuild).parameters["_types_namespace"]
    assert parameter.kind is parameter.KEYWORD_ONLY
    assert "__pydantic_parent_namespace__" in BaseModel.__dict__


def test_aiogram_still_rebuilds_its_types_with_a_types_namespace() -> None:
    import aiogram.types

    source = inspect.getsource(aiogram.types)
    assert "model_rebuild(_types_namespace=" in source, "bot.lazymodels skips this loop: aiogram changed it"


def test_after_import_bot_aiogram_types_are_built_on_first_use_and_validate_whole_updates() -> None:
    result = _fresh(
        """
        import json, sys
        import bot
        from aiogram.methods import SendMessage
        from aiogram.methods.base import Response
        from aiogram.types import Chat, Message, Update
        from pydantic import BaseModel
        from prometheus_client import REGISTRY
        import aiogram.types
        """,
        UPDATES,
        """
        built_at_import = [
            name for name, value in vars(aiogram.types).items()
            if isinstance(value, type) and issubclass(value, BaseModel) and value.__pydantic_complete__
        ]
        rebuild_restored = BaseModel.model_rebuild.__func__ is BaseModel.__dict__["model_rebuild"].__func__
        chat_complete = Chat.__pydantic_complete__
        chat = Chat.model_validate({"id": 5, "type": "private", "first_name": "Ann"})
        message = Update.model_validate(MESSAGE_UPDATE, context={"bot": None}).message
        query = Update.model_validate(CALLBACK_UPDATE).callback_query
        sent = SendMessage(chat_id=5, text="hi", reply_markup=MESSAGE["reply_markup"])
        reply = Response[Message].model_validate({"ok": True, "result": MESSAGE})
        print(json.dumps({
            "built_at_import": built_at_import,
            "rebuild_restored": rebuild_restored,
            "chat_complete": chat_complete,
            "chat": chat.first_name,
            "message": [message.text, message.entities[0].type, message.reply_to_message.text,
                        message.reply_markup.inline_keyboard[0][0].callback_data, message.photo[0].width],
            "query": [query.data, query.message.text, query.from_user.language_code],
            "sent": sent.model_dump(exclude_none=True)["reply_markup"],
            "reply": reply.result.chat.id,
            "fallbacks": REGISTRY.get_sample_value(
                "loyalty_fast_path_fallbacks_total", {"path": "aiogram_lazy_models"}
            ),
        }))
        """,
    )
    assert result["built_at_import"] == []
    assert result["rebuild_restored"]
    assert result["chat_complete"] is False
    assert result["chat"] == "Ann"
    assert result["message"] == ["⭐ 50 积分", "bold", "/balance", "hist:2", 90]
    assert result["query"] == ["hist:2", "⭐ 50 积分", "zh-hans"]
    assert result["sent"] == {"inline_keyboard": [[{"text": "页 2 ›", "callback_data": "hist:2"}]]}
    assert result["reply"] == 501
    assert result["fallbacks"] == 0
    assert "fast path" not in result["stderr"]


def test_without_the_private_parameter_aiogram_is_imported_its_own_way_counted_and_logged() -> None:
    # As if pydantic no longer named ``_types_namespace``: aiogram's own calls still work (through **kwargs).
    result = _fresh(
        """
        import json
        from pydantic import BaseModel

        original = BaseModel.__dict__["model_rebuild"].__func__

        def model_rebuild(cls, **kwargs):
            return original(cls, **kwargs)

        BaseModel.model_rebuild = classmethod(model_rebuild)
        import bot
        from aiogram.types import Chat, Update
        from prometheus_client import REGISTRY
        """,
        UPDATES,
        """
        query = Update.model_validate(CALLBACK_UPDATE).callback_query
        print(json.dumps({
            "chat_complete": Chat.__pydantic_complete__,
            "query": query.message.text,
            "fallbacks": REGISTRY.get_sample_value(
                "loyalty_fast_path_fallbacks_total", {"path": "aiogram_lazy_models"}
            ),
        }))
        """,
    )
    assert result["chat_complete"] is True  # built at import, as aiogram does
    assert result["query"] == "⭐ 50 积分"
    assert result["fallbacks"] == 1
    assert "fast path aiogram_lazy_models not taken" in result["stderr"]
    assert "_types_namespace" in result["stderr"]


def test_import_bot_after_aiogram_changes_nothing() -> None:
    result = _fresh(
        """
        import json
        import aiogram
        import bot
        from aiogram.types import Chat
        print(json.dumps({"chat_complete": Chat.__pydantic_complete__}))
        """
    )
    assert result["chat_complete"] is True


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def telegram_bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    settings = Settings(bot_token=tg.token, telegram_api_url=tg.base_url, _env_file=None)  # type: ignore[call-arg]
    made = make_bot(settings)
    yield made
    await made.session.close()


def test_a_response_model_is_pydantics_own_and_is_held_across_garbage_collections() -> None:
    model = response_model(User)
    assert model is Response[User]
    model_id = id(model)
    del model
    gc.collect()
    assert id(Response[User]) == model_id  # not dropped and built again
    assert response_model(User) is Response[User]


async def test_a_reply_keeps_its_response_model(tg: FakeTelegram, telegram_bot: Bot) -> None:
    bot.session._RESPONSE_MODELS.pop(Message, None)
    tg.user(4242, "Ann")
    sent = await telegram_bot.send_message(4242, "⭐ <b>50</b>")
    assert sent.text == "⭐ 50"
    assert bot.session._RESPONSE_MODELS[Message] is Response[Message]


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'child.db'}"


async def test_the_child_migrates_and_reads_the_migration(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    await upgrade_in_child(url)
    current, head = await current_and_head_in_child(url)
    assert current is not None and current == head
    assert (current, head) == await migrate.current_and_head_async(url)


async def test_the_url_goes_to_the_child_in_its_environment_not_its_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    spawn = asyncio.create_subprocess_exec

    async def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append((args, kwargs))
        return await spawn(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recording)
    url = _sqlite(tmp_path).replace("child.db", "secret-child.db")
    await upgrade_in_child(url)
    [(args, kwargs)] = seen
    assert not any("secret" in str(arg) for arg in args)
    assert kwargs["env"][migrate.URL_VARIABLE] == url


async def test_a_failing_child_is_one_line_saying_why(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'folder' / 'child.db'}"
    with pytest.raises(MigrationFailed) as failed:
        await upgrade_in_child(url)
    assert str(failed.value).startswith("migrating failed: ")
    assert "unable to open database file" in str(failed.value)
    assert "\n" not in str(failed.value)


async def test_start_up_on_sqlite_fails_with_one_line_when_the_child_does(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'child.db'}"
    settings = Settings(bot_token="1:x", database_url=url, _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(StartupError) as failed:
        await prepare_database(settings)
    message = str(failed.value)
    assert message.startswith(f"cannot open the SQLite database {tmp_path / 'missing' / 'child.db'}: migrating failed")
    assert "unable to open database file" in message and "\n" not in message
    assert failed.value.exit_code == 2


async def test_start_up_on_postgresql_fails_with_one_line_when_the_child_does() -> None:
    url = "postgresql+asyncpg://loyalty:hunter2@127.0.0.1:1/loyalty"
    settings = Settings(bot_token="1:x", database_url=url, _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(StartupError) as failed:
        await prepare_database(settings)
    message = str(failed.value)
    assert message.startswith("cannot connect to PostgreSQL at 127.0.0.1:1/loyalty (reading its migration failed: ")
    assert "hunter2" not in message and "\n" not in message
    assert failed.value.exit_code == 1


def test_start_up_leaves_alembic_out_of_the_process(tmp_path: Path) -> None:
    result = _fresh(
        f"""
        import asyncio, json, sys
        from bot.runner import prepare_database, warm_models
        from bot.settings import Settings
        from aiogram.types import Update
        from aiogram.methods import SendMessage

        settings = Settings(bot_token="1:x", database_url={_sqlite(tmp_path)!r}, _env_file=None)
        asyncio.run(prepare_database(settings))
        warm_models()
        print(json.dumps({{
            "loaded": sorted(m for m in ("alembic", "mako", "pygments") if m in sys.modules),
            "warm": [Update.__pydantic_complete__, SendMessage.__pydantic_complete__],
        }}))
        """
    )
    assert result["loaded"] == []
    assert result["warm"] == [True, True]
    assert (tmp_path / "child.db").exists()

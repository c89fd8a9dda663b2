"""Schemathesis against the OpenAPI document: generated requests, valid and not, never cause a server error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from bot.services import compose
from bot.settings import Settings
from emulator import FakeTelegram
from loyalty.members import join
from loyalty.program import load_program
from storage.database import make_engine, make_session_factory
from storage.migrate import upgrade_async
from web.server import make_http_app, start_http

TOKEN = "schema-token-0123456789"


class LiveApi:
    """The real HTTP app on a free port, on its own event loop in a thread: schemathesis calls it blocking."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.url = ""
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        try:
            self._stop = asyncio.Event()
            async with FakeTelegram() as tg:
                program = load_program()
                engine = make_engine(self.database_url)
                sessions = make_session_factory(engine)
                async with sessions() as session:  # one member, so valid references also reach the success path
                    await join(
                        session,
                        program,
                        telegram_id=1001,
                        chat_id=1001,
                        first_name="Ann",
                        last_name=None,
                        username="ann",
                        language_code="en",
                        payload=None,
                        now=datetime.now(UTC),
                    )
                config = Settings(
                    bot_token=tg.token, telegram_api_url=tg.base_url, api_tokens=frozenset({TOKEN}), _env_file=None
                )  # type: ignore[call-arg]
                services = compose(config, program, sessions)
                runner = await start_http(make_http_app(services, serve_updates=True), "127.0.0.1", 0)
                self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
                self.ready.set()
                await self._stop.wait()
                await runner.cleanup()
                await services.bot.session.close()
                await engine.dispose()
        except BaseException as exc:
            self._error = exc
            self.ready.set()
            raise

    def __enter__(self) -> LiveApi:
        self.thread.start()
        self.ready.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('schema') / 'api.db'}"
    asyncio.run(upgrade_async(url))
    with LiveApi(url) as api:
        yield api


OPERATIONS = [
    "POST /api/v1/purchases",
    "POST /api/v1/refunds",
    "GET /api/v1/members/{ref}",
    "POST /api/v1/members/{ref}/adjustments",
]


@pytest.fixture(scope="module")
def api_schema(live_api: LiveApi) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_api.url}/api/v1/openapi.json")


# Schemathesis' pytest plugin does not run on this pytest; its strategies under Hypothesis do the same job.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("label", OPERATIONS)
def test_no_request_causes_a_server_error(
    api_schema: schemathesis.BaseSchema, live_api: LiveApi, label: str, mode: GenerationMode
) -> None:
    [operation] = [result.ok() for result in api_schema.get_all_operations() if result.ok().label == label]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=live_api.url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            checks=[not_a_server_error, response_schema_conformance],
        )

    check()


def test_the_document_is_served_without_a_token(live_api: LiveApi) -> None:
    import json
    from urllib.request import urlopen

    with urlopen(f"{live_api.url}/api/v1/openapi.json") as response:
        assert json.load(response)["info"]["title"] == "Loyalty Assistant purchases API"

"""The Mini App over HTTP: initData authentication, roles checked on the server, the JSON endpoints agreeing with
the chat, replays, and bad input. The browser tests (test_miniapp_browser.py) drive the same server in Chromium."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from emulator.webapp import init_data
from loyalty.program import program_data
from loyalty.revisions import FROM_CLI, ensure_first_revision, save_revision
from storage.models import Coupon, LedgerEntry, Member, Purchase
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness
from web.server import make_http_app

MEMBER_ID = 1001
APP = "https://bot.example.com/app/"


def services_with_app(harness: BotHarness, **settings: Any) -> Any:
    services = copy.copy(harness.services)
    services.settings = harness.services.settings.model_copy(update={"webapp_url": APP, **settings})
    return services


@pytest.fixture
async def app(harness: BotHarness) -> AsyncIterator[TestClient]:
    server = TestServer(make_http_app(services_with_app(harness), serve_updates=True))
    async with TestClient(server) as client:
        yield client


def auth(harness: BotHarness, user_id: int, *, age: float = 0, token: str | None = None, **user: Any) -> dict[str, str]:
    signed = int(harness.clock().timestamp() - age)
    who = {"id": user_id, "first_name": user.pop("first_name", "Ann"), "language_code": "en", **user}
    return {"Authorization": f"tma {init_data(token or harness.tg.token, who, auth_date=signed)}"}


async def join(harness: BotHarness, user_id: int = MEMBER_ID, name: str = "Ann", language: str = "en") -> Member:
    await harness.send(harness.user(user_id, name, language_code=language), "/start")
    member = await harness.member(user_id)
    assert member is not None
    return member


async def counts(harness: BotHarness) -> tuple[int, ...]:
    async with harness.sessions() as session:
        found = [
            int((await session.execute(select(func.count()).select_from(model))).scalar_one())
            for model in (Purchase, Coupon, LedgerEntry)
        ]
        points = (await session.execute(select(func.coalesce(func.sum(Member.points), 0)))).scalar_one()
    return (*found, int(points))


async def test_the_page_is_served_with_a_strict_policy_that_lets_telegram_frame_it(app: TestClient) -> None:
    response = await app.get("/app/")
    assert response.status == 200
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'self' https://web.telegram.org" in policy
    assert "https://telegram.org/js/telegram-web-app.js" in await response.text()
    assert (await app.get("/app/static/app.js")).status == 200


async def test_without_a_webapp_url_there_is_no_app(harness: BotHarness) -> None:
    services = copy.copy(harness.services)
    async with TestClient(TestServer(make_http_app(services, serve_updates=True))) as client:
        assert (await client.get("/app/")).status == 404


@pytest.mark.parametrize("problem", ["none", "forged", "other-bot", "expired", "garbage"])
async def test_requests_without_valid_init_data_get_401_and_nothing_else(
    app: TestClient, harness: BotHarness, problem: str
) -> None:
    await join(harness)
    headers = {
        "none": {},
        "forged": {"Authorization": auth(harness, MEMBER_ID)["Authorization"].replace("Ann", "Bob")},
        "other-bot": auth(harness, MEMBER_ID, token="123456:another-bots-token"),
        "expired": auth(harness, MEMBER_ID, age=25 * 3600),
        "garbage": {"Authorization": "tma %%%=&&&hash"},
    }[problem]
    for path in ("/app/api/home", "/app/view/home"):
        response = await app.get(path, headers=headers)
        assert response.status == 401
        body = await response.text()
        assert "Ann" not in body and "points" not in body.lower()


async def test_home_agrees_with_balance_in_chat(app: TestClient, harness: BotHarness) -> None:
    member = await join(harness)
    await harness.purchase(member.code, "36.50", "R-1")
    [chat] = harness.texts(await harness.send(harness.user(MEMBER_ID), "/balance"), MEMBER_ID)
    response = await app.get("/app/api/home", headers=auth(harness, MEMBER_ID))
    assert response.status == 200, await response.text()
    home = await response.json()
    assert home["code"] == member.code and home["points"] > 0
    assert f"<b>{home['points']}</b>" in chat


async def test_a_member_calling_a_cashier_endpoint_gets_403_and_nothing_changes(
    app: TestClient, harness: BotHarness
) -> None:
    member = await join(harness)
    before = await counts(harness)
    headers = auth(harness, MEMBER_ID)
    body = {"member": member.code, "amount": "10", "key": "k" * 16}
    for method, path, payload in [
        ("POST", "/app/api/till/purchases", body),
        ("POST", "/app/api/till/coupons", {"code": "ABCDEFGH"}),
        ("POST", "/app/api/till/refunds", {"receipt": "R-1", "key": "k" * 16}),
        ("GET", f"/app/api/till/member?ref={member.code}", None),
        ("GET", "/app/api/till", None),
    ]:
        response = await app.request(method, path, json=payload, headers=headers)
        assert response.status == 403, path
        assert (await response.json())["error"]["code"] == "forbidden"
    assert await counts(harness) == before


async def test_a_cashier_records_a_purchase_once_however_often_the_page_retries(
    app: TestClient, harness: BotHarness
) -> None:
    member = await join(harness)
    headers = auth(harness, CASHIER_ID, first_name="Cass")
    found = await app.get(f"/app/api/till/member?ref={member.code}", headers=headers)
    assert (await found.json())["member"]["first_name"] == "Ann"
    body = {"member": member.code, "amount": "¥36.50", "category": "coffee", "items": 2, "key": "tap-0123456789"}
    sent = len(harness.tg.calls)
    first = await app.post("/app/api/till/purchases", json=body, headers=headers)
    assert first.status == 201, await first.text()
    result = await first.json()
    assert result["points"] > 0 and "Ann" in result["message"] and result["replayed"] is False
    [notice] = await harness.arrived(sent, MEMBER_ID)
    assert "Thank you for your purchase" in notice
    state = await counts(harness)
    again = await app.post("/app/api/till/purchases", json=body, headers=headers)
    assert again.status == 200 and (await again.json())["replayed"] is True
    assert await counts(harness) == state
    assert not harness.texts(harness.tg.calls[sent + 1 :], MEMBER_ID)  # told once
    today = await (await app.get("/app/api/till", headers=headers)).json()
    assert [p["member"] for p in today["today"]] == ["Ann"]


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("0", "invalid_purchase"),
        ("12,50", "invalid_purchase"),
        ("99999999", "invalid_purchase"),
        ("abc", "invalid_purchase"),
    ],
)
async def test_bad_amounts_are_refused_with_a_readable_message(
    app: TestClient, harness: BotHarness, amount: str, code: str
) -> None:
    member = await join(harness)
    before = await counts(harness)
    response = await app.post(
        "/app/api/till/purchases",
        json={"member": member.code, "amount": amount, "key": "k" * 16},
        headers=auth(harness, CASHIER_ID),
    )
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "invalid_purchase" and error["message"]
    assert await counts(harness) == before


async def test_staff_cannot_record_for_themselves_in_the_app(app: TestClient, harness: BotHarness) -> None:
    cashier = await join(harness, CASHIER_ID, "Cass")
    before = await counts(harness)
    response = await app.post(
        "/app/api/till/purchases",
        json={"member": cashier.code, "amount": "10", "key": "k" * 16},
        headers=auth(harness, CASHIER_ID),
    )
    assert response.status == 403 and (await response.json())["error"]["code"] == "own_account"
    assert await counts(harness) == before


async def test_unknown_members_and_non_coupons_are_explained(app: TestClient, harness: BotHarness) -> None:
    member = await join(harness)
    headers = auth(harness, CASHIER_ID)
    missing = await app.get("/app/api/till/member?ref=NOSUCH00", headers=headers)
    assert missing.status == 404 and "No member found" in (await missing.json())["error"]["message"]
    # A member card scanned where a coupon was expected is no coupon.
    wrong = await app.post("/app/api/till/coupons", json={"code": member.code}, headers=headers)
    assert wrong.status == 404 and (await wrong.json())["error"]["code"] == "no_such_coupon"
    url = await app.post("/app/api/till/coupons", json={"code": "https://evil.example/?x=<script>"}, headers=headers)
    assert url.status == 404


async def test_redeem_twice_with_one_key_gives_one_coupon_which_the_till_accepts_once(
    app: TestClient, harness: BotHarness
) -> None:
    member = await join(harness)
    for receipt in ("R-1", "R-2", "R-3"):
        await harness.purchase(member.code, "100", receipt)
    headers = auth(harness, MEMBER_ID)
    rewards = await (await app.get("/app/api/rewards", headers=headers)).json()
    reward = next(r for r in rewards["rewards"] if r["affordable"])
    assert rewards["rewards"][0]["affordable"]  # what the member can afford comes first
    body = {"reward_id": reward["id"], "key": "confirm-0123456789"}
    first = await app.post("/app/api/rewards/redeem", json=body, headers=headers)
    second = await app.post("/app/api/rewards/redeem", json=body, headers=headers)
    assert first.status == 201 and second.status == 200
    one, two = await first.json(), await second.json()
    assert one["coupon"]["code"] == two["coupon"]["code"] and two["replayed"] is True
    async with harness.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Coupon))).scalar_one() == 1
    till = auth(harness, CASHIER_ID)
    accepted = await app.post("/app/api/till/coupons", json={"code": one["coupon"]["code"]}, headers=till)
    assert accepted.status == 200 and member.code in (await accepted.json())["message"]
    again = await app.post("/app/api/till/coupons", json={"code": one["coupon"]["code"]}, headers=till)
    assert again.status == 409 and (await again.json())["error"]["code"] == "used"


async def test_the_till_refunds_a_purchase_from_its_list_once(app: TestClient, harness: BotHarness) -> None:
    member = await join(harness)
    headers = auth(harness, CASHIER_ID)
    await app.post(
        "/app/api/till/purchases", json={"member": member.code, "amount": "50", "key": "p" * 16}, headers=headers
    )
    [row] = (await (await app.get("/app/api/till", headers=headers)).json())["today"]
    body = {"purchase_id": row["purchase_id"], "key": "r" * 16}
    first = await app.post("/app/api/till/refunds", json=body, headers=headers)
    assert first.status == 201, await first.text()
    assert (await first.json())["balance"] == (await harness.member(MEMBER_ID)).points  # type: ignore[union-attr]
    again = await app.post("/app/api/till/refunds", json=body, headers=headers)
    assert again.status == 200 and (await again.json())["replayed"] is True
    [row] = (await (await app.get("/app/api/till", headers=headers)).json())["today"]
    assert row["refundable"] is False


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/app/api/till/purchases", "[1, 2]"),
        ("/app/api/till/purchases", "{not json"),
        ("/app/api/till/purchases", '{"member": "x", "amount": "1", "key": "short"}'),
        ("/app/api/rewards/redeem", '{"reward_id": -1, "key": "kkkkkkkkkkkk"}'),
        ("/app/api/settings", '{"language": "xx"}'),
        ("/app/api/profile/birthday", '{"date": "2999-01-01"}'),
        ("/app/api/profile/birthday", '{"date": "05/03"}'),
        ("/app/api/data/delete", '{"confirm": false}'),
    ],
)
async def test_bad_bodies_get_a_readable_error_and_change_nothing(
    app: TestClient, harness: BotHarness, path: str, body: str
) -> None:
    await join(harness)
    before = await counts(harness)
    headers = {**auth(harness, ADMIN_ID, first_name="Ada"), "Content-Type": "application/json"}
    if "till" not in path:
        headers = {**auth(harness, MEMBER_ID), "Content-Type": "application/json"}
    response = await app.post(path, data=body, headers=headers)
    assert 400 <= response.status < 500, await response.text()
    assert (await response.json())["error"]["message"]
    assert await counts(harness) == before
    assert await harness.member(MEMBER_ID) is not None


async def test_screens_render_in_the_members_language(app: TestClient, harness: BotHarness) -> None:
    await join(harness, language="zh-hans")
    headers = auth(harness, MEMBER_ID)
    for screen in ("home", "card", "history", "rewards", "invite", "profile", "settings", "data"):
        response = await app.get(f"/app/view/{screen}", headers=headers)
        assert response.status == 200, (screen, await response.text())
        page = await response.text()
        assert 'data-lang="zh-Hans"' in page
    home = await (await app.get("/app/view/home", headers=headers)).text()
    assert "首页" in home or "主页" in home


async def test_settings_change_the_language_for_the_chat_too(app: TestClient, harness: BotHarness) -> None:
    await join(harness)
    response = await app.post("/app/api/settings", json={"language": "zh-Hant"}, headers=auth(harness, MEMBER_ID))
    assert response.status == 200
    assert (await harness.member(MEMBER_ID)).language == "zh-Hant"  # type: ignore[union-attr]


async def test_delete_my_data_in_the_app_erases_the_member(app: TestClient, harness: BotHarness) -> None:
    await join(harness)
    headers = auth(harness, MEMBER_ID)
    export = await app.get("/app/api/data/export", headers=headers)
    assert export.status == 200 and "attachment" in export.headers["Content-Disposition"]
    assert (await export.json())["profile"]["first_name"] == "Ann"
    response = await app.post("/app/api/data/delete", json={"confirm": True}, headers=headers)
    assert response.status == 200
    erased = await harness.member(MEMBER_ID)
    assert erased is not None and erased.erased_at is not None and erased.first_name == ""
    gone = await app.get("/app/api/home", headers=headers)
    assert gone.status == 403


async def test_with_an_app_url_the_chat_offers_the_app(harness: BotHarness) -> None:
    harness.services.settings = harness.services.settings.model_copy(update={"webapp_url": APP})
    harness.dp.workflow_data.update(harness.services.handler_data())
    member = await join(harness)
    await harness.purchase(member.code, "100", "R-1")

    def app_urls(calls: list[Any]) -> list[str]:
        markups = [call.params.get("reply_markup") or {} for call in calls]
        return [
            button["web_app"]["url"]
            for markup in markups
            for row in markup.get("inline_keyboard", [])
            for button in row
            if "web_app" in button
        ]

    assert app_urls(await harness.send(harness.user(MEMBER_ID), "/start")) == [APP]
    assert app_urls(await harness.send(harness.user(MEMBER_ID), "/card")) == [APP + "?screen=card"]
    assert app_urls(await harness.send(harness.user(MEMBER_ID), "/rewards")) == [APP + "?screen=rewards"]
    assert app_urls(await harness.send(harness.user(MEMBER_ID), "/help")) == []  # a member's /help: no till
    assert app_urls(await harness.send(harness.user(CASHIER_ID, "Cass"), "/help")) == [APP + "?screen=till"]


async def test_without_an_app_url_the_chat_has_no_app_buttons(harness: BotHarness) -> None:
    member = await join(harness)
    await harness.purchase(member.code, "100", "R-1")
    for text in ("/start", "/card", "/rewards"):
        calls = await harness.send(harness.user(MEMBER_ID), text)
        assert "web_app" not in str([call.params.get("reply_markup") for call in calls])


async def test_the_menu_button_opens_the_app(harness: BotHarness) -> None:
    from bot.services import set_command_menus

    harness.services.settings = harness.services.settings.model_copy(update={"webapp_url": APP})
    before = len(harness.tg.calls)
    await set_command_menus(harness.services)
    [call] = [c for c in harness.tg.calls[before:] if c.method == "setChatMenuButton"]
    button = call.params["menu_button"]
    assert button["type"] == "web_app" and button["web_app"]["url"] == APP
    assert button["text"] == harness.services.program.name


async def test_the_menu_button_follows_a_renamed_program_without_a_restart(harness: BotHarness) -> None:
    from bot.services import set_command_menus

    harness.services.settings = harness.services.settings.model_copy(update={"webapp_url": APP})
    async with harness.sessions() as session:
        first = await ensure_first_revision(session, harness.services.program, harness.clock())
    harness.services.programs.current = first.program
    await set_command_menus(harness.services)
    watcher = harness.services.watch_program(every=0.05)
    try:
        renamed = program_data(first.program) | {"name": "Bean There"}
        async with harness.sessions() as session:  # a revision that keeps the name leaves the button alone
            await save_revision(session, renamed | {"name": first.program.name, "welcome": {"bonus": 7}},
                                based_on=first.number, author=FROM_CLI, now=harness.clock())  # fmt: skip
        before = len(harness.tg.calls)
        await _in_force(harness, first.number + 1)
        async with harness.sessions() as session:
            await save_revision(session, renamed, based_on=first.number + 1, author=FROM_CLI, now=harness.clock())
        await _in_force(harness, first.number + 2)
        for _ in range(250):
            if buttons := [c for c in harness.tg.calls[before:] if c.method == "setChatMenuButton"]:
                break
            await asyncio.sleep(0.02)
        [call] = buttons
        assert call.params["menu_button"]["text"] == "Bean There"
    finally:
        await watcher.stop()


async def _in_force(harness: BotHarness, number: int) -> None:
    for _ in range(250):
        if harness.services.programs.revision == number:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"revision {number} not in force")


async def test_the_apps_json_endpoints_are_in_the_openapi_document(app: TestClient) -> None:
    document = await (await app.get("/api/v1/openapi.json")).json()
    paths = document["paths"]
    assert "/api/v1/purchases" in paths
    for path in ("/app/api/home", "/app/api/till", "/app/api/till/member"):
        assert "get" in paths[path], path
    for path in ("/app/api/rewards/redeem", "/app/api/till/purchases", "/app/api/till/coupons"):
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert body.rsplit("/", 1)[1] in document["components"]["schemas"]
    assert document["components"]["securitySchemes"]["telegramInitData"]["in"] == "header"


async def test_vip_subscription_in_the_app_agrees_with_the_chat(app: TestClient, harness: BotHarness) -> None:
    program = harness.services.program
    assert program.vip is not None
    harness.services.programs.current = program.model_copy(
        update={"vip": program.vip.model_copy(update={"renew": "subscription"})}
    )
    await join(harness)
    headers = auth(harness, MEMBER_ID)
    assert (await (await app.get("/app/api/home", headers=headers)).json())["vip_offered"] is True
    shown = await (await app.get("/app/api/vip", headers=headers)).json()
    assert shown["subscription"] is True and shown["renews"] is None and shown["vip_until"] is None
    page = await (await app.get("/app/view/vip", headers=headers)).text()
    assert "data-vip-buy" in page and "Subscribe ⭐250" in page
    response = await app.post("/app/api/vip/link", json={}, headers=headers)
    assert response.status == 200
    link = (await response.json())["link"]
    [made] = harness.tg.calls_of("createInvoiceLink")
    assert made.params["subscription_period"] == 2592000 and harness.tg.invoice_links[link]["total_amount"] == 250
    # Paid in Telegram's sheet: the app then shows the renewal and its Cancel renewal button.
    stamp = int(harness.clock().timestamp())
    await harness.feed(harness.tg.subscription_payment_update(harness.user(MEMBER_ID), link, now=stamp, charge_id="s1"))
    shown = await (await app.get("/app/api/vip", headers=headers)).json()
    assert shown["renews"] is True and shown["vip_until"] == shown["renews_on"] == "Dec 22, 2026"
    assert (await app.post("/app/api/vip/link", json={}, headers=headers)).status == 409  # one subscription
    cancel = await app.post("/app/api/vip/renewal", json={"renew": False}, headers=headers)
    assert cancel.status == 200 and (await cancel.json())["message"] == "Renewal cancelled."
    assert harness.tg.subscriptions["s1"]["is_canceled"] is True
    again = await app.post("/app/api/vip/renewal", json={"renew": False}, headers=headers)
    assert again.status == 409 and "already cancelled" in (await again.json())["error"]["message"]
    assert len(harness.tg.calls_of("editUserStarSubscription")) == 1
    page = await (await app.get("/app/view/vip", headers=headers)).text()
    assert 'data-renewal="true"' in page and "will not renew" in page
    # The chat's /vip says the same.
    calls = await harness.send(harness.user(MEMBER_ID), "/vip")
    assert "will not renew" in harness.texts(calls)[-1]
    bad = await app.post("/app/api/vip/renewal", json={"renew": "maybe"}, headers=headers)
    assert bad.status == 400 and harness.tg.subscriptions["s1"]["is_canceled"] is True

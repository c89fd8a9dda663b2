"""The Mini App in a real browser: Debian's Chromium driven by Playwright against the real HTTP server and
database. Telegram's ``telegram-web-app.js`` is replaced by the stand-in (web/miniapp/static/telegram-stand-in.js),
which reads the signed initData and theme from the URL's fragment as Telegram passes them, turns the MainButton
and BackButton into page elements, and lets a test "scan" a QR text."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlalchemy import func, select

from emulator.webapp import init_data, launch_url
from storage.models import Coupon
from tests.harness import CASHIER_ID, BotHarness
from tests.test_miniapp import MEMBER_ID, join, services_with_app
from web.miniapp.core import TELEGRAM_SCRIPT
from web.server import make_http_app

CHROMIUM = Path("/usr/bin/chromium")
STAND_IN = Path(__file__).resolve().parent.parent / "web" / "miniapp" / "static" / "telegram-stand-in.js"


@pytest.fixture
async def server(harness: BotHarness) -> AsyncIterator[str]:
    app = make_http_app(services_with_app(harness), serve_updates=True)
    async with TestServer(app, host="127.0.0.1") as test_server:
        yield str(test_server.make_url("/app/"))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        await launched.close()


async def open_app(
    browser: Browser,
    server: str,
    harness: BotHarness,
    user_id: int,
    *,
    first_name: str = "Ann",
    dark: bool = False,
    age: float = 0,
    tamper: bool = False,
    screen: str | None = None,
) -> Page:
    page = await browser.new_page(viewport={"width": 390, "height": 844})
    # Telegram's script would come from the internet: the stand-in takes its place.
    await page.route(f"{TELEGRAM_SCRIPT}*", lambda route: route.fulfill(path=STAND_IN, content_type="text/javascript"))
    user = {"id": user_id, "first_name": first_name, "language_code": "en"}
    data = init_data(harness.tg.token, user, auth_date=int(harness.clock().timestamp() - age))
    if tamper:
        data = data.replace("Ann", "Eve")
    await page.goto(launch_url(server, data, dark=dark, screen=screen))
    return page


async def coupons(harness: BotHarness) -> int:
    async with harness.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(Coupon))).scalar_one())


async def earn(harness: BotHarness, code: str, *amounts: str) -> None:
    for index, amount in enumerate(amounts):
        await harness.purchase(code, amount, f"R-{index + 1}")


async def test_the_home_screen_shows_the_balance_the_chat_shows(
    browser: Browser, server: str, harness: BotHarness
) -> None:
    member = await join(harness)
    await earn(harness, member.code, "36.50")
    [chat] = harness.texts(await harness.send(harness.user(MEMBER_ID), "/balance"), MEMBER_ID)
    page = await open_app(browser, server, harness, MEMBER_ID)
    balance = page.locator("#balance")
    await expect(balance).to_be_visible()
    assert f"<b>{await balance.inner_text()}</b>" in chat
    # The Mini App told Telegram it is ready and asked for the full height.
    assert await page.evaluate("TelegramStandIn.ready && TelegramStandIn.expanded")
    await page.close()


async def test_a_double_tap_on_redeem_gives_one_coupon_shown_as_a_qr(
    browser: Browser, server: str, harness: BotHarness
) -> None:
    member = await join(harness)
    await earn(harness, member.code, "100", "100", "100")
    page = await open_app(browser, server, harness, MEMBER_ID, screen="rewards")
    await page.locator("[data-redeem]").first.click()
    main_button = page.locator("#tg-main-button")
    await expect(main_button).to_be_visible()
    await expect(main_button).to_contain_text("Redeem")
    await main_button.dblclick()
    await expect(page.locator(".coupon-code")).to_have_count(1)
    await expect(page.locator(".coupon .qr svg")).to_have_count(1)
    assert await coupons(harness) == 1
    await page.close()


async def test_a_cashier_scans_records_and_the_member_sees_it_in_app_and_chat(
    browser: Browser, server: str, harness: BotHarness
) -> None:
    member = await join(harness)
    till = await open_app(browser, server, harness, CASHIER_ID, first_name="Cass")
    await till.locator("[data-scan=member]").click()
    await till.evaluate(f"TelegramStandIn.scan({member.code!r})")
    await expect(till.locator("#found-name")).to_have_text("Ann")
    await expect(till.locator("#tg-main-button")).to_have_text("Record purchase")  # always in reach
    for key in "36.5":
        await till.locator(f"[data-digit='{key}']").click()
    await expect(till.locator("#amount")).to_have_value("36.5")
    await till.locator("label.chip", has_text="coffee").first.click()
    sent = len(harness.tg.calls)
    submit = till.locator("form[data-post='till/purchases'] [type=submit]")
    await submit.dblclick()  # a double tap records once
    toast = till.locator("#toast")
    await expect(toast).to_contain_text("Recorded")
    await expect(till.locator("#today li")).to_have_count(1)
    haptics = await till.evaluate("TelegramStandIn.haptics")
    assert "impact:medium" in haptics and "notification:success" in haptics
    refreshed = await harness.member(MEMBER_ID)
    assert refreshed is not None and refreshed.points > member.points
    [notice] = await harness.arrived(sent, MEMBER_ID)
    assert "Thank you for your purchase" in notice
    home = await open_app(browser, server, harness, MEMBER_ID)
    await expect(home.locator("#balance")).to_have_text(str(refreshed.points))
    await till.close()
    await home.close()


async def test_a_scanned_coupon_is_accepted_once(browser: Browser, server: str, harness: BotHarness) -> None:
    member = await join(harness)
    await earn(harness, member.code, "100", "100", "100")
    app = await open_app(browser, server, harness, MEMBER_ID, screen="rewards")
    await app.locator("[data-redeem]").first.click()
    await app.locator("#tg-main-button").click()
    code = await app.locator(".coupon-code").first.inner_text()
    till = await open_app(browser, server, harness, CASHIER_ID, first_name="Cass")
    toast = till.locator("#toast")
    await till.locator("[data-scan=coupon]").click()
    await till.evaluate(f"TelegramStandIn.scan({code!r})")
    await expect(toast).to_contain_text("Coupon accepted")
    await expect(toast).to_contain_text(member.code)
    await till.locator("[data-scan=coupon]").click()
    await till.evaluate(f"TelegramStandIn.scan({code!r})")
    await expect(toast).to_contain_text("already used")
    await expect(toast).to_have_class(re.compile("bad"))
    # A member card scanned as a coupon is no coupon.
    await till.locator("[data-scan=coupon]").click()
    await till.evaluate(f"TelegramStandIn.scan({member.code!r})")
    await expect(toast).to_contain_text("No coupon")
    await app.close()
    await till.close()


@pytest.mark.parametrize("problem", ["tampered", "expired"])
async def test_bad_init_data_shows_nothing(browser: Browser, server: str, harness: BotHarness, problem: str) -> None:
    member = await join(harness)
    await earn(harness, member.code, "50")
    page = await open_app(
        browser, server, harness, MEMBER_ID, tamper=problem == "tampered", age=48 * 3600 if problem == "expired" else 0
    )
    await expect(page.locator(".unauthenticated")).to_be_visible()
    text = await page.locator("body").inner_text()
    assert "open this app from the bot" in text and member.code not in text and "#balance" not in await page.content()
    await page.close()


async def test_a_member_opening_the_till_is_refused(browser: Browser, server: str, harness: BotHarness) -> None:
    await join(harness)
    page = await open_app(browser, server, harness, MEMBER_ID, screen="till")
    await expect(page.locator("#toast")).to_contain_text("only for the shop's staff")
    await expect(page.locator("[data-scan]")).to_have_count(0)
    await page.close()


@pytest.mark.parametrize(
    ("language", "words"),
    [("zh-hans", ["首页", "积分"]), ("zh-hant", ["首頁", "積分"])],
)
async def test_chinese_screens_render_in_both_scripts(
    browser: Browser, server: str, harness: BotHarness, language: str, words: list[str]
) -> None:
    await join(harness, language=language)
    page = await open_app(browser, server, harness, MEMBER_ID)
    await expect(page.locator("#balance")).to_be_visible()
    text = await page.locator("body").inner_text()
    assert all(word in text for word in words), text
    assert await page.evaluate("document.documentElement.lang") == ("zh-Hans" if language == "zh-hans" else "zh-Hant")
    await page.close()


async def test_the_dark_theme_follows_telegram(browser: Browser, server: str, harness: BotHarness) -> None:
    await join(harness)
    page = await open_app(browser, server, harness, MEMBER_ID, dark=True)
    await expect(page.locator("#balance")).to_be_visible()
    background: Any = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(23, 33, 43)"  # Telegram's dark bg_color from themeParams
    assert await page.evaluate("document.documentElement.dataset.scheme") == "dark"
    await page.close()


async def test_history_pages_as_you_scroll_and_back_returns(browser: Browser, server: str, harness: BotHarness) -> None:
    member = await join(harness)
    await earn(harness, member.code, *["10"] * 24)
    page = await open_app(browser, server, harness, MEMBER_ID)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    await page.locator(".tabs [data-go=history]").click()
    rows = page.locator("#history-rows li")
    await expect(rows.first).to_be_visible()
    for _ in range(10):  # scrolling down brings the older pages, one request each
        await page.mouse.wheel(0, 4000)
        await page.wait_for_timeout(100)
    await expect(rows).to_have_count(25)  # 24 purchases and the welcome bonus
    pages = sorted(url.rsplit("page=", 1)[1] for url in asked if "view/history?page=" in url)
    assert pages == ["1", "2"], asked  # ten a page: the first with the screen, then two more as it scrolled
    await expect(page.locator("#tg-back-button")).to_be_visible()
    await page.locator("#tg-back-button").click()
    await expect(page.locator("#balance")).to_be_visible()
    await page.close()

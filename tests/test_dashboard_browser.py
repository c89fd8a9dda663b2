"""The dashboard in Chromium: an admin opens the app on it, in Chinese; the charts are drawn with the page, a point
shows its value under the pointer, a series can be hidden, another period chosen, and a CSV downloaded."""

from __future__ import annotations

import os

from playwright.async_api import Browser, expect

from tests.harness import ADMIN_ID, BotHarness
from tests.test_dashboard import figures
from tests.test_miniapp import join
from tests.test_miniapp_browser import browser, open_app, server
from tests.test_stats import _shop

__all__ = ["browser", "server"]  # the fixtures


async def test_an_admin_opens_on_the_dashboards_charts_in_chinese(
    browser: Browser, server: str, harness: BotHarness
) -> None:
    await _shop(harness)
    await join(harness, ADMIN_ID, "Ada", "zh-hans")
    page = await open_app(browser, server, harness, ADMIN_ID, first_name="Ada", dark=True)
    board = page.locator("[data-dashboard][data-wired]")  # its script is listening
    await expect(board).to_be_visible()
    charts = page.locator(".chart svg")
    await expect(charts).to_have_count(5)
    await expect(page.locator(".chart figcaption").nth(0)).to_have_text("新会员与消费笔数")
    await expect(page.locator("[data-chart=cohorts] figcaption")).to_have_text("按加入月份的会员复购情况")
    await expect(page.locator(".kpi[data-card=members] b")).to_have_text("3")  # the admin joined just now, at the end
    # The drawn shapes: lines and points of the trend, a bar a tier, cells of the heat map.
    assert await page.locator("[data-chart=members] polyline").count() == 2
    assert await page.locator("[data-chart=tiers] rect.mark").count() >= 2
    assert await page.locator("[data-chart=cohorts] rect.mark").count() == 12 * 13 // 2  # past months only
    # Hovering the last day's purchases point shows its value.
    point = page.locator("[data-chart=members] circle.mark.s1").last
    await point.hover()
    tip = page.locator("[data-chart=members] .chart-tip")
    await expect(tip).to_be_visible()
    await expect(tip).to_contain_text("消费笔数 4")
    # A bar of the points chart, tapped: its money value.
    await page.locator("[data-chart=points] rect.mark").last.click()
    await expect(page.locator("[data-chart=points] .chart-tip")).to_contain_text("未使用积分 · ")
    # The purchases series hidden and shown again.
    toggle = page.locator("[data-chart=members] .series-toggle[data-series='1']")
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    await expect(page.locator("[data-chart=members] polyline.s1")).to_be_hidden()
    await toggle.click()
    await expect(page.locator("[data-chart=members] polyline.s1")).to_be_visible()
    # Another period: the screen comes again with its figures.
    await page.locator("#periods [data-period='12m']").click()
    await expect(page.locator("#periods [data-period='12m']")).to_have_attribute("aria-checked", "true")
    await expect(page.locator(".chart svg")).to_have_count(5)
    # A download: saved from the fetched file, named as the server says.
    async with page.expect_download() as downloading:
        await page.locator("[data-export=purchases]").click()
    download = await downloading.value
    assert download.suggested_filename == "purchases.csv"
    saved = await download.path()
    assert saved is not None and "45.50" in saved.read_text(encoding="utf-8-sig")
    if os.environ.get("LOYALTY_SCREENSHOTS"):  # a look at it by hand
        await page.screenshot(path=os.environ["LOYALTY_SCREENSHOTS"], full_page=True)
    await page.close()


async def test_the_console_tab_opens_the_dashboard_in_english(
    browser: Browser, server: str, harness: BotHarness
) -> None:
    await _shop(harness)
    page = await open_app(browser, server, harness, ADMIN_ID, first_name="Ada", screen="console/staff")
    await page.locator(".segments [data-go='console/dashboard']").click()
    await expect(page.locator(".chart svg")).to_have_count(5)
    await expect(page.locator("#periods [aria-checked=true]")).to_have_text("30 days")
    await expect(page.locator(".kpi[data-card=members] b")).to_have_text("3")
    # The figures are the API's: a purchases point per day.
    headers = {"Authorization": await page.evaluate("`tma ${Telegram.WebApp.initData}`")}
    response = await page.request.get(server + "api/console/dashboard?period=30d", headers=headers)
    board = await response.json()
    assert figures(board)[("members", "total")] == 3
    points = await page.locator("[data-chart=members] circle.mark.s1").count()
    assert points == len(board["trend"]["purchases"])
    await page.locator("[data-chart=members] circle.mark.s1").last.hover()
    if os.environ.get("LOYALTY_SCREENSHOTS"):
        await page.screenshot(path=os.environ["LOYALTY_SCREENSHOTS"].replace(".png", "-en.png"), full_page=True)
    await page.close()

"""The console's Broadcasts in Chromium: an admin composes with the formatting buttons, a photo and a link button,
watches the audience count follow a filter, sees the preview, sends, and watches the progress reach done; a slower
broadcast is paused and resumed from its screen."""

from __future__ import annotations

import asyncio

from playwright.async_api import Browser, Page, expect

from notifications.broadcasting import Broadcaster, RateLimiter
from tests.harness import ADMIN_ID, BotHarness
from tests.test_console_broadcasts import PNG
from tests.test_miniapp import join
from tests.test_miniapp_browser import browser, open_app, server

__all__ = ["browser", "server"]  # the fixtures


async def _members(harness: BotHarness) -> None:
    await join(harness, ADMIN_ID, "Ada")  # the admin has the bot's chat open: their photo copy goes there
    for tid in range(2001, 2007):
        await join(harness, tid, f"M{tid}", "zh-hans" if tid == 2001 else "en")


async def _new_broadcast(browser: Browser, server: str, harness: BotHarness) -> Page:
    page = await open_app(browser, server, harness, ADMIN_ID, first_name="Ada")
    await page.locator(".tabs [data-go='console/dashboard']").click()
    await page.locator(".segments [data-go='console/broadcasts']").click()
    await page.locator("[data-go='console/broadcast/new']").click()
    await expect(page.locator("#compose")).to_be_visible()
    return page


async def test_an_admin_composes_previews_sends_and_watches_it_finish(
    browser: Browser, server: str, harness: BotHarness
) -> None:
    await _members(harness)
    page = await _new_broadcast(browser, server, harness)
    audience = page.locator("#audience")
    await expect(audience).to_contain_text("Audience: 7 members")
    text = page.locator("fieldset[data-version=default] textarea")
    await text.fill("Double points")
    await text.evaluate("area => area.setSelectionRange(0, 6)")  # "Double", made bold with the toolbar
    await page.locator("fieldset[data-version=default] [data-wrap=b]").click()
    await text.press("End")
    await text.type(" this Friday & Saturday")
    await expect(text).to_have_value("<b>Double</b> points this Friday & Saturday")
    preview = page.locator("#bc-preview")
    await expect(preview.locator(".bubble-text b")).to_have_text("Double")
    await expect(preview.locator(".bubble-text")).to_have_text("Double points this Friday & Saturday")
    await page.locator("fieldset[data-version=default] input[name=button_text]").fill("Order now")
    await page.locator("fieldset[data-version=default] input[name=button_url]").fill("https://example.com/order")
    await expect(preview.locator("#bc-preview-button")).to_have_text("🔗 Order now")
    await page.locator("fieldset[data-version=default] [data-photo-input]").set_input_files(
        files=[{"name": "cake.png", "mimeType": "image/png", "buffer": PNG}]
    )
    await expect(preview.locator(".bubble-img")).to_be_visible()
    # A filter changes the count; back to everyone.
    await page.locator("#bc-filters select[name=lang]").select_option("zh-Hans")
    await expect(audience).to_contain_text("Audience: 1 member")
    await page.locator("#bc-filters select[name=lang]").select_option("")
    await page.locator("#bc-filters input[name=points]").fill("99999")
    await expect(audience).to_contain_text("Audience: 0 members")
    await page.locator("#bc-filters input[name=points]").fill("")
    await expect(audience).to_contain_text("Audience: 7 members")

    await page.locator("#compose [type=submit]").click()
    await expect(page.locator("#tg-popup-text")).to_contain_text("Send it now? 👥 Audience: 7 members")
    await page.locator("#tg-popup-ok").click()
    await expect(page.locator("#bc-status")).to_have_text("done", timeout=15_000)
    await expect(page.locator("#bc-sent")).to_have_text("7")
    await expect(page.locator(".bubble-text b")).to_have_text("Double")
    for tid in (2001, 2002):
        [copy] = [m for m in harness.tg.messages(tid) if "Double" in str(m.get("caption"))]
        assert copy["caption"] == "Double points this Friday & Saturday" and copy["photo"]
    await page.close()


async def test_an_admin_pauses_and_resumes_a_broadcast(browser: Browser, server: str, harness: BotHarness) -> None:
    await _members(harness)
    broadcaster: Broadcaster = harness.dp["broadcaster"]
    broadcaster.limiter = RateLimiter(1)  # a copy a second: there is time to pause it
    page = await _new_broadcast(browser, server, harness)
    await page.locator("fieldset[data-version=default] textarea").fill("Slow news")
    await page.locator("#compose [type=submit]").click()
    await page.locator("#tg-popup-ok").click()
    await expect(page.locator("#bc-status")).to_have_text("sending")
    await page.locator("form[data-post='console/broadcast/pause'] [type=submit]").click()
    await expect(page.locator("#bc-status")).to_have_text("paused")
    await expect(page.locator("#toast")).to_contain_text("is now paused")
    assert broadcaster.task is not None
    await asyncio.wait_for(broadcaster.task, 10)
    remaining = int(await page.locator("#bc-remaining").inner_text())
    assert remaining > 0
    broadcaster.limiter = RateLimiter(50)
    await page.locator("form[data-post='console/broadcast/resume'] [type=submit]").click()
    await expect(page.locator("#bc-status")).to_have_text("done", timeout=15_000)
    await expect(page.locator("#bc-remaining")).to_have_text("0")
    await page.close()

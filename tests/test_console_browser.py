"""The console in Chromium: an admin finds a member, opens their file and adjusts their points; the member is told
in the chat and their app shows the new balance. A cashier has no Console tab."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness
from tests.test_miniapp import MEMBER_ID, join
from tests.test_miniapp_browser import browser, open_app, server

__all__ = ["browser", "server"]  # the fixtures


async def test_an_admin_searches_opens_and_adjusts_and_the_member_sees_it(
    browser: Browser, server: str, harness: BotHarness
) -> None:
    member = await join(harness)
    console = await open_app(browser, server, harness, ADMIN_ID, first_name="Ada")
    await console.locator(".tabs [data-go='console/dashboard']").click()
    await console.locator(".segments [data-go='console/members']").click()
    await console.locator("input[name=q]").fill("an")
    await console.locator("form[data-search] [type=submit]").click()
    await console.locator("#found [data-go]", has_text="Ann").click()
    await expect(console.locator("#member-name")).to_have_text("Ann")
    # Bad input: a message under the form, nothing saved.
    await console.locator("#adjust input[name=points]").fill("0")
    await console.locator("#adjust input[name=reason]").fill("Nothing")
    await console.locator("#adjust [type=submit]").click()
    await expect(console.locator("#adjust + .form-error")).to_contain_text("not zero")
    await console.locator("#adjust input[name=points]").fill("30")
    await console.locator("#adjust input[name=reason]").fill("Sorry for the wait")
    sent = len(harness.tg.calls)
    await console.locator("#adjust [type=submit]").dblclick()  # a double tap adjusts once
    await expect(console.locator("#toast")).to_contain_text("+30 points for Ann")
    await expect(console.locator("#member-points")).to_have_text(str(member.points + 30))
    [notice] = await harness.arrived(sent, MEMBER_ID)
    assert "+30 points from our team: Sorry for the wait" in notice
    refreshed = await harness.member(MEMBER_ID)
    assert refreshed is not None and refreshed.points == member.points + 30
    home = await open_app(browser, server, harness, MEMBER_ID)
    await expect(home.locator("#balance")).to_have_text(str(member.points + 30))
    await console.close()
    await home.close()


async def test_a_cashier_has_no_console_tab(browser: Browser, server: str, harness: BotHarness) -> None:
    await join(harness)
    till = await open_app(browser, server, harness, CASHIER_ID, first_name="Cass")
    await expect(till.locator(".tabs [data-go=till]")).to_be_visible()
    await expect(till.locator(".tabs [data-go^='console/']")).to_have_count(0)
    await till.close()

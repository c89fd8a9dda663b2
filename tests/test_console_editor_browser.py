"""The Program editor in Chromium: an admin changes the earn rate and a cashier's next purchase, in chat and in the
Mini App's till on a second worker, earns at the new rate within seconds; a rejected value is explained next to its
field; of two admins saving from one revision the second is refused and told what changed; rollback."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect
from redis.asyncio import Redis
from sqlalchemy import select

from bot.programs import CHANNEL
from bot.services import Services
from loyalty.revisions import current_number, ensure_first_revision
from storage.models import AuditLog, Purchase
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness
from tests.test_miniapp import APP, MEMBER_ID, join
from tests.test_miniapp_browser import browser, open_app
from tests.test_revisions import _purchase, _sees, _worker, redis
from web.server import make_http_app

__all__ = ["browser", "redis"]  # the fixtures

OTHER_ADMIN = 9004


def with_app(services: Services, redis: Redis | None = None) -> Services:
    """A worker's services serving the Mini App, both admins' ids in its settings."""
    served = copy.copy(services)
    served.settings = services.settings.model_copy(
        update={"webapp_url": APP, "admin_ids": frozenset({ADMIN_ID, OTHER_ADMIN})}
    )
    if redis is not None:
        served.redis = redis
    return served


async def serve(services: Services) -> AsyncIterator[str]:
    async with TestServer(make_http_app(services, serve_updates=True), host="127.0.0.1") as test_server:
        yield str(test_server.make_url("/app/"))


@pytest.fixture
async def first(harness: BotHarness, redis: Redis) -> AsyncIterator[str]:
    """The first worker's HTTP server, which tells the others of a new revision through Redis."""
    async with harness.sessions() as session:
        await ensure_first_revision(session, harness.services.program, harness.clock())
    async for url in serve(with_app(harness.services, redis)):
        yield url


async def open_section(page: Page, section: str) -> None:
    if not await page.locator(".segments").count():  # else the console is open (the MainButton covers the tabs)
        await page.locator(".tabs [data-go='console/dashboard']").click()
    await page.locator(".segments [data-go='console/program']").click()
    await page.locator(f"#sections [data-go='console/program?section={section}']").click()
    await expect(page.locator("form[data-editor][data-wired]")).to_be_visible()  # its script is listening


async def revision(harness: BotHarness) -> int | None:
    async with harness.sessions() as session:
        return await current_number(session)


async def test_a_new_earn_rate_reaches_the_chat_and_the_till_on_a_second_worker(
    browser: Browser, first: str, harness: BotHarness, redis: Redis
) -> None:
    member = await join(harness)
    two = await _worker(harness, redis)
    two.watch_program()
    for _ in range(250):  # listening before the news
        if (await redis.pubsub_numsub(CHANNEL))[0][1] >= 1:
            break
        await asyncio.sleep(0.02)
    admin = await open_app(browser, first, harness, ADMIN_ID, first_name="Ada")
    await open_section(admin, "earn")
    rate = admin.locator("[data-field='points_per_unit'] input")
    await rate.fill("3")
    await expect(admin.locator("#editor-status")).to_have_text("Looks right.")
    await admin.locator("#sample input[name=amount]").fill("10")
    await admin.locator("#sample [type=submit]").click()
    await expect(admin.locator("#preview-now")).to_have_text("10 points")
    await expect(admin.locator("#preview-draft")).to_have_text("30 points")
    await admin.locator("#editor [data-note]").fill("triple points")
    await admin.locator("#editor-save").click()
    await expect(admin.locator("#toast")).to_contain_text("Saved as revision 2")
    await expect(admin.locator("[data-field='points_per_unit'] input")).to_have_value("3")  # the form, reloaded
    await _sees(two, 2)  # within 5 s, told through Redis
    chat = await _purchase(harness, two, "R-1")
    assert (chat.points, chat.program_revision) == (30, 2)

    async for second in serve(with_app(two)):
        till = await open_app(browser, second, harness, CASHIER_ID, first_name="Cass")
        await till.locator("[data-scan=member]").click()
        await till.evaluate(f"TelegramStandIn.scan({member.code!r})")
        await expect(till.locator("#found-name")).to_have_text("Ann")
        for key in "10":
            await till.locator(f"[data-digit='{key}']").click()
        await till.locator("form[data-post='till/purchases'] [type=submit]").click()
        await expect(till.locator("#toast")).to_contain_text("Recorded")
        await till.close()
    async with harness.sessions() as session:
        purchases = (await session.execute(select(Purchase).order_by(Purchase.id))).scalars().all()  # type: ignore[arg-type]
        [line] = (await session.execute(select(AuditLog))).scalars().all()
    assert [(p.points, p.program_revision) for p in purchases] == [(30, 2), (30, 2)]
    assert (line.actor_id, line.action) == (ADMIN_ID, "program_edit") and "triple points" in line.detail
    refreshed = await harness.member(MEMBER_ID)
    assert refreshed is not None and refreshed.points == member.points + 60
    assert two.watcher is not None
    await two.watcher.stop()
    await admin.close()


async def test_a_rejected_value_is_explained_next_to_its_field_and_nothing_is_saved(
    browser: Browser, first: str, harness: BotHarness
) -> None:
    admin = await open_app(browser, first, harness, ADMIN_ID, first_name="Ada")
    await open_section(admin, "earn")
    await admin.locator("[data-field='points_per_unit'] input").fill("-1")
    error = admin.locator("[data-path='earn.points_per_unit'] > [data-error]")
    await expect(error).to_contain_text("earn.points_per_unit: Input should be greater than 0")  # as one types
    await expect(admin.locator("[data-path='earn.points_per_unit'] input")).to_have_attribute("aria-invalid", "true")
    await admin.locator("#editor-save").click()
    await expect(admin.locator("#toast")).to_contain_text("earn.points_per_unit")
    await expect(error).to_be_visible()
    # A problem in a row goes next to the row's field, and opens the row.
    await open_section(admin, "rewards")
    await admin.locator("[data-add-row]").click()
    row = admin.locator(".row-list > [data-row]").last
    await row.locator("[data-field='key'] input").fill("Bad Key")
    await row.locator("[data-field='title'] input").fill("Cookie")
    await row.locator("[data-field='cost'] input").fill("40")
    await expect(row.locator("[data-field='key'] > [data-error]")).to_contain_text(
        "rewards.2.key: String should match pattern"
    )
    await expect(row.locator("summary")).to_contain_text("Bad Key")
    await row.locator("[data-field='key'] input").fill("cookie")
    await expect(admin.locator("#editor-status")).to_have_text("Looks right.")
    await expect(row.locator("[data-field='key'] > [data-error]")).to_be_hidden()
    assert await revision(harness) == 1
    await admin.locator("#editor-save").click()
    await expect(admin.locator("#toast")).to_contain_text("Saved as revision 2")
    assert [r.key for r in harness.services.program.rewards][-1] == "cookie"
    await admin.close()


async def test_two_admins_saving_from_one_revision_the_second_is_told_what_changed(
    browser: Browser, first: str, harness: BotHarness
) -> None:
    ada = await open_app(browser, first, harness, ADMIN_ID, first_name="Ada")
    otto = await open_app(browser, first, harness, OTHER_ADMIN, first_name="Otto")
    await open_section(ada, "earn")
    await open_section(otto, "welcome")
    await ada.locator("[data-field='points_per_unit'] input").fill("2")
    await ada.locator("#editor-save").click()
    await expect(ada.locator("#toast")).to_contain_text("Saved as revision 2")
    await otto.locator("[data-field='bonus'] input").fill("99")
    await otto.locator("#editor-save").click()
    refusal = otto.locator("#editor > [data-error]")
    await expect(refusal).to_contain_text("Changed since: Earning")
    await expect(refusal).to_contain_text("revision 2")
    assert await revision(harness) == 2 and harness.services.program.welcome.bonus != 99
    await ada.close()
    await otto.close()


async def test_an_old_revision_made_current_again_from_the_console(
    browser: Browser, first: str, harness: BotHarness
) -> None:
    admin = await open_app(browser, first, harness, ADMIN_ID, first_name="Ada")
    await open_section(admin, "earn")
    await admin.locator("[data-field='points_per_unit'] input").fill("5")
    await admin.locator("#editor-save").click()
    await expect(admin.locator("#toast")).to_contain_text("Saved as revision 2")
    await admin.locator("[data-editor-screen] [data-go='console/program']").click()
    await admin.locator("[data-go='console/program/history']").click()
    await expect(admin.locator("#revisions > li")).to_have_count(2)
    await expect(admin.locator("#revisions > li").first).to_contain_text("Changed: Earning")
    await admin.locator("[data-revision='1'] [type=submit]").click()
    await admin.locator("#tg-popup-ok").click()
    await expect(admin.locator("#revisions > li")).to_have_count(3)
    await expect(admin.locator("#revisions > li").first).to_contain_text("Brings back revision 1")
    assert harness.services.program.revision == 3 and harness.services.program.earn.points_per_unit == 1
    await admin.close()

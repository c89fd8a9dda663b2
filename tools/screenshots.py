"""Screenshots of every Mini App screen, for the README: ``python tools/screenshots.py [--out docs/screenshots]``.

Serves the real HTTP app (``web.server.make_http_app``, Mini App on) on 127.0.0.1 over a temporary SQLite database
and the Bot API emulator, seeds a member (points, a tier, a punch card with stamps, a coupon, a favourite) and a
cashier with a purchase at their till, and photographs each screen in headless Chromium (Debian's, driven by
Playwright, Telegram's script replaced by web/miniapp/static/telegram-stand-in.js as in the browser tests) at a
phone's 390×844, in light and dark, in English and Simplified Chinese (Traditional Chinese for a few screens).
Files are named ``<screen>-<language>-<scheme>.png``; README.md beside them links them all.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from aiohttp import web
from playwright.async_api import Browser, Page, Route, async_playwright
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.services import compose, make_bot
from bot.settings import Settings
from emulator import FakeTelegram
from emulator.webapp import init_data, launch_url
from loyalty import broadcasts, profile
from loyalty.members import join, set_language
from loyalty.program import EXAMPLE_PROGRAM, Program, parse_program
from loyalty.purchases import record_purchase
from loyalty.revisions import FROM_TELEGRAM, ensure_first_revision, save_revision
from loyalty.rewards import catalog, redeem, sync_catalog
from loyalty.segments import Segment
from storage.clock import utcnow
from storage.database import begin_write, make_engine, make_session_factory
from storage.migrate import upgrade_async
from storage.models import Delivery
from web.server import make_http_app

ROOT = Path(__file__).resolve().parent.parent
STAND_IN = ROOT / "web" / "miniapp" / "static" / "telegram-stand-in.js"
TELEGRAM_SCRIPT = "https://telegram.org/js/telegram-web-app.js"
CHROMIUM = "/usr/bin/chromium"
MEMBER_ID, CASHIER_ID, ADMIN_ID = 1001, 9002, 9001
MEMBER_SCREENS = ["home", "card", "rewards", "missions", "vip", "history", "invite", "profile", "settings", "data"]
CASHIER_SCREENS = ["till", "till-member"]
LANGUAGES = {"en": "en", "zh-Hans": "zh-hans", "zh-Hant": "zh-hant"}  # ours: Telegram's language_code
# Traditional Chinese differs from Simplified in its glyphs and words, not its layout: a few screens show it.
ZH_HANT_SCREENS = {"home", "card", "till-member", "program-earn"}
SCHEMES = ("light", "dark")
VIEWPORT = {"width": 390, "height": 844}
# The example program with two of its (commented-out) missions on, so the missions screen has something to show.
MISSIONS = """
[[missions]]
key = "three-visits"
name = "3 visits this month"
name_zh_hans = "本月到店3次"
name_zh_hant = "本月到店3次"
goal = "purchases"
target = 3
period = "month"
points = 30

[[missions]]
key = "explorer"
name = "Try 2 categories this month"
name_zh_hans = "本月尝试2个品类"
name_zh_hant = "本月嘗試2個品類"
goal = "categories"
target = 2
period = "month"
reward = "latte"
"""


def load_program() -> Program:
    return parse_program(EXAMPLE_PROGRAM.read_text() + MISSIONS)


@dataclass
class Seeded:
    member_id: int
    code: str


async def seed(url: str) -> Seeded:
    """A member with a tier, stamps, a coupon and history; a purchase at the cashier's till today."""
    program = load_program()
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    now = utcnow()
    try:
        async with sessions() as session:
            await sync_catalog(session, program)
            await ensure_first_revision(session, program, now - timedelta(days=60))
            joined = await join(
                session,
                program,
                telegram_id=MEMBER_ID,
                chat_id=MEMBER_ID,
                first_name="Ann",
                last_name="Lee",
                username="ann",
                language_code="en",
                payload=None,
                now=now - timedelta(days=40),
            )
            member = joined.member
            assert member.id is not None
            # Spend past Silver's 500; four coffees stamp the coffee card.
            visits = [("36.50", "coffee", 30), ("128.00", None, 24), ("42.00", "coffee", 17), ("215.00", None, 9)]
            visits += [("38.00", "coffee", 5), ("96.00", "pastries", 2)]
            for n, (amount, category, days_ago) in enumerate(visits):
                await record_purchase(
                    session,
                    program,
                    member_id=member.id,
                    amount=Decimal(amount),
                    source="screenshots",
                    external_id=f"R-{n}",
                    now=now - timedelta(days=days_ago),
                    category=category,
                )
            await record_purchase(
                session,
                program,
                member_id=member.id,
                amount=Decimal("45.00"),
                source="screenshots",
                external_id="R-till",
                now=now - timedelta(minutes=20),
                category="coffee",
                recorded_by=CASHIER_ID,
            )
            latte = next(r for r in await catalog(session) if r.key == "latte")
            assert latte.id is not None
            await redeem(session, member_id=member.id, reward_id=latte.id, key="screenshots", now=now, program=program)
            await profile.set_favourite(session, program, member.id, "coffee", True, now)
            # An admin's edit in the console, for the program's history.
            bigger = program.model_copy(update={"welcome": program.welcome.model_copy(update={"bonus": 100})})
            await save_revision(
                session, bigger, based_on=1, author=FROM_TELEGRAM, author_id=ADMIN_ID, now=now, note="A bigger welcome"
            )
            await seed_broadcast(session, program, now)
            return Seeded(member.id, member.code)
    finally:
        await engine.dispose()


async def seed_broadcast(session: AsyncSession, program: Program, now: datetime) -> None:
    """More members, and a broadcast half sent, for the console's Broadcasts."""
    for n, language in enumerate(["en", "en", "zh-hans", "zh-hant", "en"]):
        await join(
            session,
            program,
            telegram_id=3001 + n,
            chat_id=3001 + n,
            first_name=f"Guest{n}",
            last_name=None,
            username=None,
            language_code=language,
            payload=None,
            now=now - timedelta(days=10),
        )
    content = {
        "default": {
            "text": "<b>Double points</b> this Friday on every coffee ☕",
            "button": {"text": "See the menu", "url": "https://example.com/menu"},
        },
        "zh-Hans": {"text": "<b>双倍积分</b>：本周五所有咖啡 ☕"},
    }
    made = await broadcasts.create(
        session, program, created_by=ADMIN_ID, content=content, segment=Segment(), now=now - timedelta(seconds=8)
    )
    await begin_write(session)
    half = select(col(Delivery.id)).where(col(Delivery.broadcast_id) == made.id).limit(made.total // 2)
    await session.execute(
        update(Delivery).where(col(Delivery.id).in_(half)).values(status="sent", sent_at=now - timedelta(seconds=3))
    )
    await session.commit()


async def use_language(url: str, member_id: int, language: str) -> None:
    engine = make_engine(url)
    try:
        async with make_session_factory(engine)() as session:
            await set_language(session, member_id, language)
    finally:
        await engine.dispose()


async def stand_in(route: Route) -> None:
    await route.fulfill(path=STAND_IN, content_type="text/javascript")


async def open_page(browser: Browser, app_url: str, token: str, user: dict[str, object], **launch: object) -> Page:
    page = await browser.new_page(viewport=VIEWPORT, device_scale_factor=1)  # type: ignore[arg-type]
    await page.route(f"{TELEGRAM_SCRIPT}*", stand_in)
    await page.goto(launch_url(app_url, init_data(token, user), **launch))  # type: ignore[arg-type]
    return page


async def settled(page: Page, screen: str) -> None:
    await page.locator(f'.screen[data-screen="{screen}"]').wait_for(state="visible")
    await page.evaluate("document.fonts.ready")
    await page.wait_for_timeout(150)


async def shoot(page: Page, out: Path, name: str, *, whole: bool = False) -> None:
    await page.screenshot(path=str(out / f"{name}.png"), full_page=whole)
    print(f"  {name}.png")


async def photograph(out: Path) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="loyalty-screenshots-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'screenshots.db'}"
        await upgrade_async(url)
        seeded = await seed(url)
        async with FakeTelegram(strict=False) as tg:
            settings = Settings(
                bot_token=tg.token,
                telegram_api_url=tg.base_url,
                database_url=url,
                cashier_ids=frozenset({CASHIER_ID}),
                admin_ids=frozenset({ADMIN_ID}),
                webapp_url="https://shop.example.com/app/",
                _env_file=None,
            )  # type: ignore[call-arg]
            engine = make_engine(url)
            bot = make_bot(settings)
            services = compose(settings, load_program(), make_session_factory(engine), bot)
            runner = web.AppRunner(make_http_app(services, serve_updates=True), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            app_url = f"http://127.0.0.1:{port}/app/"
            written: list[str] = []
            try:
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(executable_path=CHROMIUM)
                    for language, code in LANGUAGES.items():
                        await use_language(url, seeded.member_id, language)
                        for scheme in SCHEMES:
                            written += await member_screens(browser, app_url, tg.token, language, code, scheme, out)
                            written += await cashier_screens(
                                browser, app_url, tg.token, language, code, scheme, out, seeded.code
                            )
                            written += await admin_screens(browser, app_url, tg.token, language, code, scheme, out)
                            if language != "zh-Hant":
                                written += await broadcast_screens(
                                    browser, app_url, tg.token, language, code, scheme, out
                                )
                    await browser.close()
            finally:
                await runner.cleanup()
                await bot.session.close()
                await engine.dispose()
    return written


async def member_screens(
    browser: Browser, app_url: str, token: str, language: str, code: str, scheme: str, out: Path
) -> list[str]:
    user = {"id": MEMBER_ID, "first_name": "Ann", "language_code": code}
    names = []
    for screen in MEMBER_SCREENS:
        if language == "zh-Hant" and screen not in ZH_HANT_SCREENS:
            continue
        page = await open_page(browser, app_url, token, user, dark=scheme == "dark", screen=screen)
        await settled(page, screen)
        name = f"{screen}-{language}-{scheme}"
        await shoot(page, out, name)
        names.append(name)
        if screen == "rewards" and language == "en":
            # Redeeming asks for confirmation on Telegram's MainButton (a bar at the bottom in the stand-in).
            await page.locator("[data-redeem]").first.click()
            await page.locator("#tg-main-button").wait_for(state="visible")
            name = f"rewards-confirm-{language}-{scheme}"
            await shoot(page, out, name)
            names.append(name)
        await page.context.close()
    return names


async def cashier_screens(
    browser: Browser, app_url: str, token: str, language: str, code: str, scheme: str, out: Path, member_code: str
) -> list[str]:
    user = {"id": CASHIER_ID, "first_name": "Cass", "language_code": code}
    names = []
    page = await open_page(browser, app_url, token, user, dark=scheme == "dark")
    await settled(page, "till")
    if language != "zh-Hant" or "till" in ZH_HANT_SCREENS:
        await shoot(page, out, f"till-{language}-{scheme}")
        names.append(f"till-{language}-{scheme}")
    await page.locator("[data-scan=member]").click()
    await page.evaluate(f"TelegramStandIn.scan({member_code!r})")
    await settled(page, "till/member")
    for key in "12.5":
        await page.locator(f"[data-digit='{key}']").click()
    await page.locator("label.chip").first.click()
    await page.evaluate("window.scrollTo(0, 0)")
    await shoot(page, out, f"till-member-{language}-{scheme}")
    names.append(f"till-member-{language}-{scheme}")
    await page.context.close()
    return names


async def admin_screens(
    browser: Browser, app_url: str, token: str, language: str, code: str, scheme: str, out: Path
) -> list[str]:
    """The console's Program editor: the sections, the earn form with a mistake and a preview, the rewards list
    with a row open, and the history."""
    user = {"id": ADMIN_ID, "first_name": "Ada", "language_code": code}
    names = []
    shots = [
        ("dashboard", "console/dashboard"),
        ("program", "console/program"),
        ("program-earn", "console/program?section=earn"),
        ("program-rewards", "console/program?section=rewards"),
        ("program-history", "console/program/history"),
    ]
    for name, screen in shots:
        if language == "zh-Hant" and name not in ZH_HANT_SCREENS:
            continue
        page = await open_page(browser, app_url, token, user, dark=scheme == "dark", screen=screen)
        await settled(page, screen.partition("?")[0])
        if name == "program-earn":
            await page.locator("[data-field='points_per_unit'] input").fill("2")
            await page.locator("[data-field='minimum_amount'] input").fill("-5")
            await page.locator("[data-path='earn.minimum_amount'] > [data-error]").wait_for(state="visible")
            await page.locator("[data-field='minimum_amount'] input").fill("5")
            await page.locator("#sample input[name=amount]").fill("36.50")
            await page.locator("#sample [type=submit]").click()
            await page.locator("#preview-result").wait_for(state="visible")
            await page.locator("[data-field='minimum_amount'] input").fill("-5")
            await page.locator("[data-path='earn.minimum_amount'] > [data-error]").wait_for(state="visible")
            await page.locator("#preview-draft", has_text="—").wait_for()
        elif name == "program-rewards":
            await page.locator(".row-list > [data-row] > summary").first.click()
        await page.wait_for_timeout(100)
        full = f"{name}-{language}-{scheme}"
        await shoot(page, out, full, whole=name in ("program-earn", "dashboard"))
        names.append(full)
        await page.context.close()
    return names


async def broadcast_screens(
    browser: Browser, app_url: str, token: str, language: str, code: str, scheme: str, out: Path
) -> list[str]:
    """The console's Broadcasts: the list, a broadcast being sent, and the compose form filled in."""
    user = {"id": ADMIN_ID, "first_name": "Ada", "language_code": code}
    names = []
    for screen, name in (("console/broadcasts", "broadcasts"), ("console/broadcast?id=1", "broadcast")):
        page = await open_page(browser, app_url, token, user, dark=scheme == "dark", screen=screen)
        await settled(page, screen.split("?")[0])
        await shoot(page, out, f"{name}-{language}-{scheme}")
        names.append(f"{name}-{language}-{scheme}")
        await page.context.close()
    page = await open_page(browser, app_url, token, user, dark=scheme == "dark", screen="console/broadcast/new")
    await settled(page, "console/broadcast/new")
    text = "<b>Double points</b> this Friday on every coffee ☕\n<i>Show your card at the till.</i>"
    await page.locator("fieldset[data-version=default] textarea").fill(text)
    await page.locator("fieldset[data-version=default] input[name=button_text]").fill("See the menu")
    await page.locator("fieldset[data-version=default] input[name=button_url]").fill("https://example.com/menu")
    await page.locator("#bc-filters select[name=lang]").select_option("en")
    await page.wait_for_timeout(600)  # the audience count follows the filter
    await shoot(page, out, f"broadcast-new-{language}-{scheme}")
    names.append(f"broadcast-new-{language}-{scheme}")
    await page.locator("#bc-preview").scroll_into_view_if_needed()
    await shoot(page, out, f"broadcast-preview-{language}-{scheme}")
    names.append(f"broadcast-preview-{language}-{scheme}")
    await page.context.close()
    return names


def write_index(out: Path, names: list[str]) -> None:
    titles = {
        "home": "Home: balance, tier, punch card",
        "card": "Member card (QR for the till)",
        "rewards": "Rewards and coupons",
        "rewards-confirm": "Redeeming: confirm on the MainButton",
        "history": "Points history",
        "invite": "Invite a friend",
        "profile": "Profile",
        "settings": "Settings",
        "data": "My data",
        "missions": "Missions and their progress",
        "vip": "VIP: the offer and its renewal",
        "till": "Cashier: till",
        "till-member": "Cashier: member scanned, amount typed",
        "dashboard": "Console: the dashboard, figures and charts for 30 days",
        "program": "Console: the program's sections",
        "program-earn": "Console: editing earning, a mistake beside its field, a sample purchase compared",
        "program-rewards": "Console: the rewards list, one open",
        "program-history": "Console: the program's revisions, Make current",
        "broadcasts": "Console: broadcasts",
        "broadcast": "Console: a broadcast being sent, with pause / cancel",
        "broadcast-new": "Console: composing a broadcast",
        "broadcast-preview": "Console: the filters, the audience and the preview",
    }
    lines = [
        "# Mini App screenshots",
        "",
        "Made by `python tools/screenshots.py` (headless Chromium at 390×844 with the stand-in for Telegram's",
        "`telegram-web-app.js`, so Telegram's MainButton and BackButton appear as page elements). The member has",
        "points, the Silver tier, stamps on the coffee card and a latte coupon. Run it again after changing a screen;",
        "Debian needs `fonts-noto-cjk` and `fonts-noto-color-emoji` for the Chinese and the emoji.",
        "",
    ]
    for screen, title in titles.items():
        shots = [
            (f"{language} {scheme}", f"{screen}-{language}-{scheme}.png")
            for language in LANGUAGES
            for scheme in SCHEMES
            if f"{screen}-{language}-{scheme}" in names
        ]
        if not shots:
            continue
        lines += [f"## {title}", ""]
        lines += ["| " + " | ".join(label for label, _ in shots) + " |", "|" + "---|" * len(shots)]
        lines += ["| " + " | ".join(f'<img src="{file}" width="195" alt="{file}">' for _, file in shots) + " |", ""]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names = asyncio.run(photograph(args.out))
    write_index(args.out, names)
    total = sum(p.stat().st_size for p in args.out.glob("*.png"))
    print(f"{len(names)} screenshots, {total / 1e6:.1f} MB, in {args.out}")


if __name__ == "__main__":
    main()
